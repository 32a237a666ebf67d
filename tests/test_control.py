"""The recipe as a control and uncertainty in rankings: the paired bootstrap, ASHA's protected
recipe trial, and what the report says (better, tied, worse) from a stored comparison."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from reports import render
from tests.test_reports import TRIALS, experiment_record, table_after
from tuning.control import control, paired_gap
from tuning.methods._stage import FairASHA
from tuning.store import Control, Gap, TestScore

N = 500  # as many pairs as the CPU profile's validation split


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 5, N)


def noisy(labels: np.ndarray, sd: float, seed: int) -> np.ndarray:
    return labels + np.random.default_rng(seed).normal(0, sd, len(labels))


# --- the paired bootstrap --------------------------------------------------------------------


def test_a_clearly_better_model_is_better_and_the_reverse_worse(labels):
    good, bad = noisy(labels, 0.8, 1), noisy(labels, 1.6, 2)
    gap = paired_gap(labels, good, bad)
    assert gap.model == pytest.approx(np.corrcoef(good, labels)[0, 1])
    assert gap.other == pytest.approx(np.corrcoef(bad, labels)[0, 1])
    assert gap.gap == pytest.approx(gap.model - gap.other) and gap.gap > 0.05
    assert 0 < gap.low < gap.gap < gap.high and gap.pairs == N
    assert gap.verdict == "better"
    assert paired_gap(labels, bad, good).verdict == "worse"


def test_two_models_alike_within_noise_are_a_tie(labels):
    a, b = noisy(labels, 1.0, 3), noisy(labels, 1.0, 4)
    gap = paired_gap(labels, a, b)
    assert gap.low < 0 < gap.high and gap.verdict == "tied"
    same = paired_gap(labels, a, a)
    assert (same.gap, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "tied")


def test_pairing_narrows_the_interval_of_a_small_shared_difference(labels):
    """Both models share most of their error: only the pairs resampled together see that the
    small difference is consistent; the interval excludes 0 though each r's own interval is wide."""
    shared = noisy(labels, 1.0, 5)
    better = shared + 0.03 * (labels - shared)  # the same model, nudged toward the labels
    gap = paired_gap(labels, better, shared)
    own = 1.96 / np.sqrt(N - 3) * (1 - gap.other**2)  # one r's 95% half-width (Fisher's z, near r)
    assert gap.gap < own / 3 and gap.verdict == "better"


def test_a_fixed_seed_gives_the_same_interval(labels):
    a, b = noisy(labels, 1.0, 6), noisy(labels, 1.1, 7)
    assert paired_gap(labels, a, b, seed=3) == paired_gap(labels, a, b, seed=3)


def test_unequal_lengths_are_refused(labels):
    with pytest.raises(ValueError, match="scores of 499 and 500 pairs for 500 labels"):
        paired_gap(labels, labels[:-1], labels)


# --- control(): the winner against the recipe and the runners-up ---------------------------


def score(trial_id: str, role: str = "top") -> TestScore:
    return TestScore(
        trial_id=trial_id, stage="optuna", params={"learning_rate": 1e-5}, validation={}, test={}, role=role
    )


def test_control_compares_the_winner_with_the_recipe_on_held_out_and_the_runner_up_on_validation(labels):
    record = experiment_record(TRIALS)
    splits = {"validation": labels, "test": labels[::-1].copy()}
    predictions = {
        ("optuna", "aaaa"): {"validation": noisy(labels, 0.8, 1), "test": noisy(splits["test"], 0.8, 2)},
        ("optuna", "bbbb"): {"validation": noisy(labels, 0.8, 3), "test": noisy(splits["test"], 0.8, 4)},
        ("optuna", "cccc"): {"validation": noisy(labels, 1.6, 5), "test": noisy(splits["test"], 1.6, 6)},
    }
    scores = [score("aaaa"), score("bbbb"), score("cccc", role="recipe")]
    out = control(record, scores, predictions, splits, ("optuna", "cccc"))
    assert out.winner == "optuna/aaaa" and out.recipe == "optuna/cccc"
    assert set(out.held_out) == {"test"} and out.held_out["test"].verdict == "better"
    assert set(out.runners_up) == {"optuna/bbbb"} and out.runners_up["optuna/bbbb"].verdict == "tied"
    none = control(record, scores[:2], predictions, splits, None)
    assert none.recipe is None and none.held_out == {} and "no recipe trial" in none.note


# --- the report ------------------------------------------------------------------------------


def gap(low: float, high: float) -> Gap:
    return Gap(model=0.82, other=0.81, gap=(low + high) / 2, low=low, high=high, pairs=1379)


def report_with(control: Control) -> str:
    record = experiment_record(TRIALS)
    record.meta.control = control
    record.meta.data_sizes = {"validation": 500}
    return render(record)


def test_the_report_says_better_with_the_interval_and_the_budgets():
    text = report_with(
        Control(
            winner="optuna/aaaa",
            winner_pairs=4000,
            recipe="optuna/cccc",
            recipe_params={"learning_rate": 5e-5},
            recipe_pairs=4000,
            resamples=2000,
            held_out={"test": gap(0.002, 0.014), "klue_dev": gap(-0.004, 0.012)},
        )
    )
    line = next(line for line in text.splitlines() if line.startswith("- Winner vs the recipe"))
    assert "`optuna/cccc`: learning_rate=5e-05" in line
    # Hand-written trials report no pairs: only the kept checkpoints' budgets are known.
    assert (
        "the recipe kept its checkpoint at 4,000 pairs; the winner kept its checkpoint at 4,000 pairs" in line
    )
    assert "test 0.82 vs 0.81 (+0.0080, 95% CI +0.0020 to +0.0140): **better**" in line
    assert "klue_dev 0.82 vs 0.81 (+0.0040, 95% CI -0.0040 to +0.0120): **tied (within noise)**" in line


def test_a_tie_at_the_top_is_reported_as_a_tie_not_a_winner():
    text = report_with(
        Control(winner="optuna/aaaa", resamples=2000, runners_up={"optuna/bbbb": gap(-0.01, 0.03)})
    )
    assert "- Within noise on validation: `optuna/aaaa` and `optuna/bbbb`" in text
    assert "not a clear best" in text
    assert (
        "- vs `optuna/bbbb`: 0.82 vs 0.81 (+0.0100, 95% CI -0.0100 to +0.0300): tied (within noise)" in text
    )
    assert "The top 2 are within noise of each other" in text
    apart = report_with(
        Control(winner="optuna/aaaa", resamples=2000, runners_up={"optuna/bbbb": gap(0.01, 0.03)})
    )
    assert "Within noise on validation" not in apart and "leads every other top trial beyond noise" in apart


def test_the_ranking_shows_each_trials_budget_and_interval():
    record = experiment_record(
        [
            t.__class__(**{**t.__dict__, "reports": [{**e, "pairs": 64 * e["epoch"]} for e in t.reports]})
            for t in TRIALS
        ]
    )
    record.meta.data_sizes = {"validation": 500}
    rows = table_after(render(record), "## Ranking by validation Pearson")
    header, first = rows[0], rows[1]
    assert header[header.index("pairs")] == "pairs" and "pearson 95% CI" in header
    assert first[1] == "optuna/aaaa" and first[header.index("pairs")] == "128"  # its best epoch, 2
    low, high = map(float, first[header.index("pearson 95% CI")].split("–"))
    assert low < 0.8 < high and high - low == pytest.approx(0.064, abs=0.01)  # Fisher's z, n = 500


def test_no_recipe_is_said_with_the_reason():
    text = report_with(
        Control(winner="optuna/aaaa", note="this search ran no recipe trial (the method enqueues none)")
    )
    assert "- Recipe control: none, this search ran no recipe trial (the method enqueues none)." in text


# --- ASHA keeps the recipe's trial to the end ---------------------------------------------------


def trial(trial_id: str, lr: float) -> SimpleNamespace:
    """What ASHA reads of a Tune trial: its id and config."""
    return SimpleNamespace(trial_id=trial_id, config={"training": {"learning_rate": lr, "batch_size": 32}})


def fair_asha(
    min_trials: int,
    recipe: dict | None = None,
    rungs: list[int] = [100, 300],  # noqa: B006 (read only)
    max_t: int = 900,
    reduction_factor: int = 3,
) -> FairASHA:
    """ASHA on validation Pearson by training pairs seen, first rung at 100 pairs."""
    return FairASHA(
        recipe=recipe,
        rungs=rungs,
        min_trials=min_trials,
        time_attr="pairs",
        metric="pearson",
        mode="max",
        max_t=max_t,
        grace_period=100,
        reduction_factor=reduction_factor,
    )


@pytest.mark.parametrize("protected", [True, False])
def test_asha_never_stops_the_recipe_trial_and_still_stops_the_others(protected):
    recipe = {"training/learning_rate": 5e-5} if protected else None
    # min_trials 1: Ray's ASHA, where the first trial at a rung meets no cutoff
    asha = fair_asha(1, recipe=recipe, rungs=[100, 200], max_t=400, reduction_factor=2)
    trials = [trial("a", 1e-4), trial("b", 3e-5), trial("r", 5e-5), trial("c", 2e-5)]
    for t in trials:
        asha.on_trial_add(None, t)
    by_id = {t.trial_id: t for t in trials}

    def decide(trial_id: str, pairs: int, pearson: float) -> str:
        return asha.on_trial_result(None, by_id[trial_id], {"pairs": pairs, "pearson": pearson})

    assert decide("a", 100, 0.9) == TrialScheduler.CONTINUE  # the first at a rung: no cutoff yet
    assert decide("b", 100, 0.95) == TrialScheduler.CONTINUE  # above the cutoff (0.9)
    # The recipe is below the rung's cutoff: plain ASHA stops it, the control is kept.
    expected = TrialScheduler.CONTINUE if protected else TrialScheduler.STOP
    assert decide("r", 100, 0.1) == expected
    assert decide("c", 100, 0.05) == TrialScheduler.STOP  # protection is the recipe's alone
    if protected:
        assert decide("r", 200, 0.1) == TrialScheduler.CONTINUE
        assert decide("r", 400, 0.2) == TrialScheduler.STOP  # at the largest budget it ends as any trial
        assert asha._num_stopped == 2  # c, and the recipe at its end


@pytest.mark.parametrize("min_trials", [1, 2, 3])
def test_fair_rungs_judge_the_first_trials_at_a_rung_once_it_fills(min_trials):
    """Ray's ASHA (1) keeps the first trial at a rung whatever it scored; a fair rung judges it
    at its next report, by its value at the rung, against everything recorded there by then."""
    asha = fair_asha(min_trials)
    trials = {i: trial(i, 1e-4) for i in "abcd"}
    for t in trials.values():
        asha.on_trial_add(None, t)

    def decide(trial_id: str, pairs: int, pearson: float) -> str:
        return asha.on_trial_result(None, trials[trial_id], {"pairs": pairs, "pearson": pearson})

    first = decide("a", 100, 0.5)  # the weakest arrives first
    second = decide("b", 100, 0.9)
    third = decide("c", 100, 0.95)
    # a's next report: judged by its 0.5 at the rung (not by the 0.99 it has now) once judged at all
    a_later = decide("a", 200, 0.99)
    assert (first, second, third) == (TrialScheduler.CONTINUE,) * 3
    if min_trials == 1:  # a met an empty rung, b a rung of [0.5]: both continue, a for good
        assert a_later == TrialScheduler.CONTINUE
    else:  # a waited for the rung to fill and is judged now: 0.5 is below the top third
        assert a_later == TrialScheduler.STOP
    # b: judged on arrival against [0.5, 0.9] (2) and kept; at 3 it waited, and is judged now
    expected = TrialScheduler.STOP if min_trials == 3 else TrialScheduler.CONTINUE
    assert decide("b", 200, 0.99) == expected
    assert decide("c", 200, 0.99) == TrialScheduler.CONTINUE  # the best at the rung goes on
    assert asha.rung_counts() == {100: 3, 300: 0}
    assert decide("d", 400, 0.1) == TrialScheduler.STOP  # past a full rung it is judged at once


def test_a_fair_rung_pickled_before_it_existed_decides_as_ray_asha():
    """A search started before fair rungs pickled its scheduler without them: resumed, it
    decides as before (Ray's ASHA with the control)."""
    import pickle

    asha = fair_asha(3)
    state = {k: v for k, v in asha.__dict__.items() if k not in ("_rungs", "_judged", "_min_trials")}
    old = FairASHA.__new__(FairASHA)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    a, b = trial("a", 1e-4), trial("b", 1e-4)
    old.on_trial_add(None, a)
    old.on_trial_add(None, b)
    assert old.on_trial_result(None, a, {"pairs": 100, "pearson": 0.9}) == TrialScheduler.CONTINUE
    assert old.on_trial_result(None, b, {"pairs": 100, "pearson": 0.1}) == TrialScheduler.STOP
    assert old.rung_counts() == {}


def test_with_cost_levels_a_trial_is_judged_only_against_trials_of_its_level():
    """A search with a cost objective groups rungs by depth: a shallow trial is not stopped for
    scoring below deep ones it is cheaper than, but is stopped below shallow ones."""
    asha = FairASHA(
        rungs=[100], min_trials=2, groups=["model/num_hidden_layers"], time_attr="pairs",
        metric="pearson", mode="max", max_t=900, grace_period=100, reduction_factor=2,
    )  # fmt: skip

    def at(trial_id: str, layers: int) -> SimpleNamespace:
        return SimpleNamespace(trial_id=trial_id, config={"model": {"num_hidden_layers": layers}})

    deep1, deep2, shallow1, shallow2 = at("d1", 12), at("d2", 12), at("s1", 4), at("s2", 4)
    for t in (deep1, deep2, shallow1, shallow2):
        asha.on_trial_add(None, t)

    def decide(t: SimpleNamespace, pairs: int, pearson: float) -> str:
        return asha.on_trial_result(None, t, {"pairs": pairs, "pearson": pearson})

    assert decide(deep1, 100, 0.85) == TrialScheduler.CONTINUE  # alone at its level's rung
    assert decide(deep2, 100, 0.84) == TrialScheduler.STOP  # below the deep cutoff
    # 0.70 is far below the deep trials, but its level's rung holds only itself: it goes on
    assert decide(shallow1, 100, 0.70) == TrialScheduler.CONTINUE
    assert decide(shallow2, 100, 0.72) == TrialScheduler.CONTINUE  # the better of the two shallow
    assert decide(shallow1, 200, 0.75) == TrialScheduler.STOP  # judged once its rung filled: 0.70 < 0.72
    assert asha.rung_counts({"model": {"num_hidden_layers": 12}}) == {100: 2}
    assert asha.rung_counts({"model": {"num_hidden_layers": 4}}) == {100: 2}
