"""One trial without Ray: real training of a tiny model, every epoch reported, exact resume."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tuning.model import STSModel, predict
from tuning.settings import DataConfig, ModelConfig, TrainingConfig
from tuning.trial import REPORTED, Fidelity, TrialSettings, fit_score_map, run_training, target_transform
from tuning.winners import load_checkpoint


def settings(architecture: str = "cross", **training) -> TrialSettings:
    train = {"num_epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 1, **training}
    return TrialSettings(
        data=DataConfig(),
        model=ModelConfig(name_or_path="builtin:tiny", architecture=architecture, max_length=64),
        training=TrainingConfig(**train),
    )


def train(s: TrialSettings, splits, tmp_path: Path, resume_from: str | None = None, keep_epoch: float = 1):
    """Run a trial; return its reports and a copy of epoch ``keep_epoch``'s checkpoint."""
    reports, kept = [], tmp_path / f"kept-{len(list(tmp_path.iterdir()))}"

    def report(metrics: dict, checkpoint: str | None) -> None:
        reports.append(metrics)
        if metrics["epoch"] == keep_epoch:
            shutil.copytree(checkpoint, kept)

    run_training(s, splits, str(tmp_path / f"out-{len(list(tmp_path.iterdir()))}"), report, resume_from)
    return reports, kept


@pytest.mark.parametrize(
    ("architecture", "head", "loss"),
    [
        ("cross", "regression", "mse"),
        ("bi", "regression", "mse"),
        ("cross", "multitask", "corr_mae"),
        ("bi", "multitask", "l1"),
        ("bi", "regression", "cosent"),
        ("bi", "regression", "angle"),
    ],
)
def test_every_epoch_is_reported_with_a_checkpoint(small_splits, tmp_path, architecture, head, loss):
    reports, kept = train(settings(architecture, head=head, loss=loss), small_splits, tmp_path)
    assert [r["epoch"] for r in reports] == [1, 2]
    for r in reports:
        assert set(REPORTED) <= set(r)
        assert all(np.isfinite(r[k]) for k in REPORTED)
    assert (kept / "model.safetensors").is_file() and (kept / "sts_model.json").is_file()
    assert STSModel.from_checkpoint(kept).head == head


def test_resume_from_a_checkpoint_continues_exactly(small_splits, tmp_path):
    s = settings(num_epochs=3)
    full, epoch1 = train(s, small_splits, tmp_path)
    resumed, _ = train(s, small_splits, tmp_path, resume_from=str(epoch1))
    assert [r["epoch"] for r in resumed] == [2, 3]
    for a, b in zip(full[1:], resumed):
        assert a["pearson"] == pytest.approx(b["pearson"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)


def test_cross_targets_are_standardized_by_default(small_splits):
    labels = np.asarray(small_splits["train"]["label"])
    scale, shift = target_transform(settings("cross"), labels)
    assert scale == pytest.approx(labels.std()) and shift == pytest.approx(labels.mean())
    assert target_transform(settings("cross", standardize_targets=False), labels) == (1.0, 0.0)
    assert target_transform(settings("bi"), labels) == (5.0, 0.0)


def test_checkpoint_maps_predictions_back_to_the_label_scale(small_splits, tmp_path):
    _, kept = train(settings("cross"), small_splits, tmp_path)
    meta = STSModel.from_checkpoint(kept).meta()
    labels = np.asarray(small_splits["train"]["label"])
    assert meta["target_scale"] == pytest.approx(labels.std(), rel=1e-6)
    assert meta["target_shift"] == pytest.approx(labels.mean(), rel=1e-6)


def test_fit_score_map_recovers_a_line_and_refuses_what_is_no_score_map():
    raw = np.array([0.80, 0.85, 0.90, 0.95])
    assert fit_score_map(raw, 40 * raw - 33) == pytest.approx((40.0, -33.0))
    assert fit_score_map(np.full(4, 0.9), np.arange(4.0)) is None  # constant cosines
    assert fit_score_map(raw, -raw) is None  # a falling line would reverse the ranking
    assert fit_score_map(raw[:1], raw[:1]) is None


@pytest.mark.parametrize(
    ("architecture", "loss"), [("bi", "cosent"), ("bi", "angle"), ("bi", "corr_mae"), ("cross", "corr_mae")]
)
def test_scale_free_loss_checkpoints_map_outputs_onto_the_label_scale(
    small_splits, tmp_path, architecture, loss
):
    """The checkpoint's scores are the least-squares line of its raw outputs on the training pairs
    (all 64 here: fewer than CALIBRATION_PAIRS), so they average to the labels' mean, not 5 x
    a cosine near 1; Pearson is the raw output's."""
    reports, kept = train(settings(architecture, loss=loss), small_splits, tmp_path, keep_epoch=2)
    model, tokenizer = load_checkpoint(str(kept))
    labels = np.asarray(small_splits["train"]["label"])
    assert model.meta()["target_scale"] not in (5.0, pytest.approx(labels.std(), rel=1e-6))
    train_split = small_splits["train"]
    scores = predict(model, tokenizer, list(zip(train_split["sentence1"], train_split["sentence2"])), 64)
    assert scores.mean() == pytest.approx(labels.mean(), abs=1e-3)
    validation = small_splits["validation"]
    scores = predict(model, tokenizer, list(zip(validation["sentence1"], validation["sentence2"])), 64)
    assert np.corrcoef(scores, validation["label"])[0, 1] == pytest.approx(reports[-1]["pearson"], abs=1e-5)


def test_regression_losses_keep_five_times_the_cosine(small_splits, tmp_path):
    _, kept = train(settings("bi", loss="mse", num_epochs=1), small_splits, tmp_path)
    assert STSModel.from_checkpoint(kept).meta()["target_scale"] == 5.0


def test_tensorboard_gets_clean_per_trial_curves(small_splits, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = settings()
    s.tensorboard_dir = str(tmp_path / "tb" / "trial_a")
    train(s, small_splits, tmp_path)
    events = EventAccumulator(s.tensorboard_dir)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "validation/pearson", "validation/f1"} <= tags
    assert [e.step for e in events.Scalars("validation/pearson")] == [64, 128]  # training pairs seen


def test_resume_trains_with_the_new_learning_rate_and_weight_decay(small_splits, tmp_path):
    """PBT hands a trial another trial's checkpoint with perturbed values: they must take effect."""
    s = settings(num_epochs=2, lr_schedule="constant_with_warmup", warmup_ratio=0.0)
    _, epoch1 = train(s, small_splits, tmp_path)
    same, _ = train(s, small_splits, tmp_path, resume_from=str(epoch1))
    s.training.learning_rate = 1e-2  # 10x the checkpoint's
    changed, _ = train(s, small_splits, tmp_path, resume_from=str(epoch1))
    assert same[0]["learning_rate"] == pytest.approx(1e-3)
    assert changed[0]["learning_rate"] == pytest.approx(1e-2)
    assert changed[0]["pearson"] != pytest.approx(same[0]["pearson"], abs=1e-9)


def test_sub_epoch_reports_arrive_at_the_configured_pairs(small_splits, tmp_path):
    # 64 training pairs in batches of 16: 4 steps an epoch; a report every 16 pairs.
    reports, _ = train(settings(eval_every_pairs=16), small_splits, tmp_path)
    assert [r["pairs"] for r in reports] == [16, 32, 48, 64, 80, 96, 112, 128]
    assert [r["epoch"] for r in reports] == [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]
    assert all(set(REPORTED) <= set(r) for r in reports)


def test_a_kill_mid_epoch_resumes_at_the_last_report_exactly(small_splits, tmp_path):
    """No pair trained twice or skipped: the resumed run's reports equal the uncut run's."""
    s = settings(eval_every_pairs=16)
    full, half = train(s, small_splits, tmp_path, keep_epoch=0.5)
    resumed, _ = train(s, small_splits, tmp_path, resume_from=str(half))
    assert [r["pairs"] for r in resumed] == [48, 64, 80, 96, 112, 128]
    for a, b in zip(full[2:], resumed):
        assert a["step"] == b["step"]
        assert a["pearson"] == pytest.approx(b["pearson"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)


@pytest.mark.parametrize(
    ("num_pairs", "batch_size", "every", "steps", "pairs"),
    [
        (64, 16, None, [4, 8], [64, 128]),  # once per epoch
        (64, 16, 16, [1, 2, 3, 4, 5], [16, 32, 48, 64, 80]),
        (64, 24, 32, [2, 3, 5, 6], [48, 64, 112, 128]),  # 3 steps an epoch, the last one short
        (64, 16, 1, [1, 2, 3, 4], [16, 32, 48, 64]),  # at most one evaluation per step
    ],
)
def test_fidelity_evaluates_at_whole_steps_and_every_epoch_end(num_pairs, batch_size, every, steps, pairs):
    fidelity = Fidelity.of(TrainingConfig(batch_size=batch_size, eval_every_pairs=every), num_pairs)
    evaluated = [g for g in range(1, 40) if fidelity.is_evaluation(g)][: len(steps)]
    assert evaluated == steps
    assert [fidelity.pairs(g) for g in evaluated] == pairs
    assert [fidelity.evaluation_index(g) for g in evaluated] == list(range(1, len(steps) + 1))


def test_freezing_lower_layers_leaves_them_untrained(small_splits, tmp_path):
    _, kept = train(settings("bi", freeze_layers=1, num_epochs=1), small_splits, tmp_path)
    trained = STSModel.from_checkpoint(kept).encoder.state_dict()
    s = settings("bi", freeze_layers=1, num_epochs=1, learning_rate=0.0)
    _, untouched = train(s, small_splits, tmp_path)
    start = STSModel.from_checkpoint(untouched).encoder.state_dict()
    for name, value in trained.items():
        if name.startswith("pooler."):  # a bi-encoder mean-pools: the pooler never trains
            continue
        frozen = name.startswith(("embeddings.", "encoder.layer.0."))
        assert torch.equal(value, start[name]) == frozen, name


# A finished trial in a reused worker: its thread has ended, its objects are garbage held only by a
# reference cycle the collector has not reached yet, and the chunks they free are scattered between
# a few survivors, so glibc can neither fold them back into the heap's top nor unmap them itself.
_FINISHED_TRIAL = """
import gc, threading, psutil
from tuning.trial import release_freed_memory

gc.disable()  # as when a collection of the oldest generation has not come round yet
me = psutil.Process()
start = me.memory_info().rss
survivors = []
def trial():
    chunks = [bytearray(4000) for _ in range(100_000)]  # ~400 MB on this thread's heap
    survivors.extend(chunks[::200])
    garbage = {"chunks": chunks}
    garbage["self"] = garbage  # a cycle: only the collector frees it
thread = threading.Thread(target=trial)
thread.start()
thread.join()
before = me.memory_info().rss
release_freed_memory()
print(start >> 20, before >> 20, me.memory_info().rss >> 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_a_reused_worker_gives_back_what_a_finished_trial_freed():
    out = subprocess.run([sys.executable, "-c", _FINISHED_TRIAL], capture_output=True, text=True, check=True)
    start, before, after = map(int, out.stdout.split())  # RSS in MiB
    assert before - start > 350, (start, before)  # the finished trial's chunks were still mapped
    assert after - start < 50, (start, before, after)  # and now they are not


def test_a_checkpoint_whose_folder_was_deleted_is_not_there(tmp_path):
    """A resumed trial whose folder was deleted starts over (``StartsOver``): Tune still hands
    over the checkpoint its saved state names, so its folder is checked, not assumed. The whole
    path runs in test_damage's resume test."""
    from ray import tune
    from ray.tune.trainable.function_trainable import wrap_function

    from tuning.trial import StartsOver, checkpoint_exists, train_trial

    # The class Ray builds for the stage's trainable (with its shared data) carries the check.
    assert issubclass(wrap_function(tune.with_parameters(train_trial, data=None)), StartsOver)

    folder = tmp_path / "checkpoint_000000"
    folder.mkdir()
    checkpoint = tune.Checkpoint.from_directory(str(folder))
    assert checkpoint_exists(checkpoint)
    folder.rmdir()
    assert not checkpoint_exists(checkpoint)
