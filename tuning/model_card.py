"""The model card (``README.md``) of an exported ``best_model``, in Hugging Face's conventions.

YAML front matter (licence, base model, library, tags, datasets, language, pipeline tag,
model-index with the test scores; what ``huggingface_hub.ModelCard`` reads), then, for a
smoke-test model, a warning that it is one; the intended use and limitations, the base model,
the data, the search that chose the model, its validation and test metrics, the hardware, the
training time, the framework versions, and how to load it. Built from what the export already
holds: the winner's record (``best.json``, ``tuning.store.Best``) and the experiment's record.
No machine path: the code refers to the folder as ``best_model``, its name in the experiment folder.
"""

from __future__ import annotations

import contextlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuning.store import DEVICE, ELAPSED_S, PAIRS, Best, ExperimentRecord
from tuning.trial_config import TrialSettings

if TYPE_CHECKING:
    from tuning.settings import ExperimentConfig

METRICS = ("pearson", "spearman", "f1", "mse")
HF_METRICS = {"pearson": "pearsonr", "spearman": "spearmanr", "f1": "f1"}
"""This project's metric names -> Hugging Face metric ids (model-index ``type``)."""

# (data source, split) -> (readable name, Hub dataset id, Hub config, Hub split).
DATASETS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("korsts", "train"): ("KorSTS train", "kor_nlu", "sts", "train"),
    ("korsts", "validation"): ("KorSTS dev", "kor_nlu", "sts", "validation"),
    ("korsts", "test"): ("KorSTS test", "kor_nlu", "sts", "test"),
    ("korsts", "klue_dev"): ("KLUE-STS dev", "klue/klue", "sts", "validation"),
    ("korsts", "korsts_dev"): ("KorSTS dev (all 1,500 pairs)", "kor_nlu", "sts", "validation"),
    ("korsts", "korsts_dev_heldout"): (
        "KorSTS dev (the pairs not used for validation)",
        "kor_nlu",
        "sts",
        "validation",
    ),
    ("klue-sts", "train"): ("KLUE-STS train (held-out part excluded)", "klue/klue", "sts", "train"),
    ("klue-sts", "validation"): ("KLUE-STS train (held-out part)", "klue/klue", "sts", "train"),
    ("klue-sts", "test"): ("KLUE-STS validation", "klue/klue", "sts", "validation"),
}
EXAMPLE = ("비행기가 이륙하고 있다.", "비행기가 이륙한다.")
FOLDER = "best_model"
"""How the card's code names the exported folder: its name in the experiment folder."""

LICENSES = {
    "klue/": "cc-by-sa-4.0",  # KLUE's models: klue/roberta-*, klue/bert-base
    "intfloat/multilingual-e5-": "mit",
    "e5-small-ko": "mit",  # ../shared's stand-in: multilingual-e5-small's weights, cut vocabulary
}
"""Base models' licences as Hugging Face licence ids, by Hub id prefix or local folder name: a
fine-tuned model stays bound by its base model's (CC-BY-SA's share-alike, MIT's notice). Any
other base model's card says ``unknown``, Hugging Face's id for a licence not stated."""


def model_card(
    best: Best,
    experiment: ExperimentRecord | None = None,
    score_map: tuple[float, float] = (5.0, 0.0),
) -> str:
    """Markdown of the model card.

    Args:
        best: the winner as ``best.json`` holds it: ``stage``, ``trial_id``, ``params``,
            ``best_epoch``, ``validation`` and ``test`` metrics, and the trial's ``config``.
        experiment: the experiment's record (name, method, data sizes, stages, trials); without
            it the card leaves out the search and the split sizes.
        score_map: a bi-encoder's ``(scale, shift)``: score = cosine x scale + shift (the
            model's ``target_scale`` / ``target_shift``; fitted when a scale-free loss
            such as CoSENT trained it).
    """
    settings = TrialSettings.from_dict(best.config)
    resolved = experiment.meta.settings if experiment else None
    sizes = experiment.meta.data_sizes if experiment else {}
    name = resolved.name if resolved else "experiment"
    test_size = is_test_size(settings, resolved)
    bi = settings.model.architecture == "bi"
    front = _front_matter(best, settings, name, test_size)
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        *(_test_size_warning(settings, resolved) if test_size else []),
        f"# Korean STS {'bi-encoder' if bi else 'cross-encoder'}: best model of `{name}`",
        "",
        "Scores the semantic similarity of two Korean sentences on KLUE-STS's 0-5 scale "
        + (
            f"as {_line(score_map, ' x the cosine', 4)} of their mean-pooled embeddings."
            if bi
            else "from the pair read as one sequence (the regression head outputs 0-5 directly)."
        ),
        "",
        *_intended_use(settings, test_size),
        *_base_model(settings, front["license"]),
        *_data(settings, sizes),
        *_search(best, experiment),
        *_results(best),
        *_hardware(best, experiment),
        *_training_time(best, experiment),
        *_versions(experiment),
        *_usage(settings, name, score_map),
    ]
    return "\n".join(lines).rstrip() + "\n"


def base_license(name_or_path: str) -> str:
    """The base model's licence (a Hugging Face licence id): a local folder's own card's
    ``license`` if it has one, else :data:`LICENSES` by Hub id or folder name, else ``unknown``."""
    card = Path(name_or_path, "README.md")
    if card.is_file():
        front = card.read_text(encoding="utf-8").split("---\n")
        try:
            meta = yaml.safe_load(front[1]) if len(front) > 2 and not front[0].strip() else None
        except yaml.YAMLError:
            meta = None
        if isinstance(meta, dict) and isinstance(meta.get("license"), str):
            return meta["license"]
    name = name_or_path if _is_hub_id(name_or_path) else Path(name_or_path).name
    return next((lic for prefix, lic in LICENSES.items() if name.startswith(prefix)), "unknown")


def is_test_size(settings: TrialSettings, resolved: ExperimentConfig | None = None) -> bool:
    """A smoke test's model (``smoke_test`` in the experiment's config ``resolved``), or one built
    in code (``builtin:tiny``): a few weights trained on a few pairs, for tests only."""
    return bool(resolved and resolved.smoke_test) or settings.model.name_or_path.startswith("builtin:")


def _is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a local path (the Hub rejects a path as ``base_model``)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def _dataset(source: str, split: str) -> tuple[str, str, str, str]:
    return DATASETS.get((source, split), (split, split, "", split))


def _front_matter(best: Best, settings: TrialSettings, name: str, test_size: bool) -> dict[str, Any]:
    bi = settings.model.architecture == "bi"
    source = settings.data.source
    kind = ["sentence-similarity", "feature-extraction"] if bi else ["cross-encoder", "text-classification"]
    task = "sentence-similarity" if bi else "text-classification"
    results = []
    for split, metrics in (best.test or {}).items():
        readable, hub_id, hub_config, hub_split = _dataset(source, split)
        dataset = {"name": readable, "type": hub_id, "split": hub_split}
        if hub_config:
            dataset["config"] = hub_config
        scores = [
            {"type": HF_METRICS[k], "value": round(float(metrics[k]), 4), "name": k.capitalize()}
            for k in HF_METRICS
            if metrics.get(k) is not None
        ]
        results.append(
            {
                "task": {"type": task, "name": "Semantic Textual Similarity"},
                "dataset": dataset,
                "metrics": scores,
            }
        )
    front: dict[str, Any] = {"license": base_license(settings.model.name_or_path)}
    if _is_hub_id(settings.model.name_or_path):
        front["base_model"] = settings.model.name_or_path
    used = ("train", *(best.test or {}))
    hub_ids = sorted({DATASETS[(source, s)][1] for s in used if (source, s) in DATASETS})
    front.update(
        library_name="sentence-transformers",
        pipeline_tag=task,
        language=["ko"],
        tags=["sentence-transformers", *kind, "korean", "sts", "ray-tune", *(["smoke-test"] * test_size)],
        datasets=hub_ids,
        metrics=list(HF_METRICS.values()),
    )
    if results:
        front["model-index"] = [{"name": f"{name}-best_model", "results": results}]
    return front


def _test_size_warning(settings: TrialSettings, resolved: ExperimentConfig | None) -> list[str]:
    if resolved and resolved.smoke_test:
        why = "It comes from a smoke test (`--smoke-test`): a run on a few dozen pairs that checks the tool works."
    else:
        why = f"Its base model, `{settings.model.name_or_path}`, is a tiny model built in code to test the tool."
    return [
        f"> **Warning: a test-size model, not for use.** {why} Its scores mean nothing; run a real "
        "search for a model to use.",
        "",
    ]


def _intended_use(settings: TrialSettings, test_size: bool) -> list[str]:
    source = settings.data.source
    trained_on = {
        "korsts": "KorSTS (the English STS-B translated into Korean)",
        "klue-sts": "KLUE-STS (Korean news headlines, reviews and conversation)",
    }.get(source, f"`{source}`")
    if test_size:
        use = "Tests of this tool only (see the warning above)."
    else:
        use = (
            "Scoring how similar in meaning two Korean sentences are, on KLUE-STS's 0-5 scale: "
            "ranking candidate sentences, finding paraphrases and near-duplicates, or as a "
            "baseline for Korean sentence-similarity work."
        )
    return [
        "## Intended use and limitations",
        "",
        use,
        "",
        f"- Trained on {trained_on}; text unlike it (other domains, long documents, other "
        "languages) was not evaluated and may score worse.",
        f"- Inputs longer than {settings.model.max_length} tokens are cut, as in training.",
        "- Scores are regression outputs, not probabilities; 'similar' at 3.0 is KLUE-STS's "
        "binary label, not a threshold tuned for any other task.",
        "- It inherits the base model's and the data's biases; it was not audited for them. Not "
        "for decisions about people.",
        "",
    ]


def _base_model(settings: TrialSettings, license_id: str) -> list[str]:
    model = settings.model
    layers = f"its first {model.num_hidden_layers} layers" if model.num_hidden_layers else "all layers"
    how = (
        "each sentence encoded alone, mean pooling over tokens"
        if model.architecture == "bi"
        else "`AutoModelForSequenceClassification` on the pair"
    )
    return [
        "## Base model",
        "",
        f"`{model.name_or_path}`, {layers}, fine-tuned as a {model.architecture} model ({how}); "
        f"inputs are cut to {model.max_length} tokens, as in training.",
        "",
        f"Licence: `{license_id}`, the base model's"
        + (" (unknown to this tool: see the base model's own terms)." if license_id == "unknown" else "."),
        "",
    ]


def _data(settings: TrialSettings, sizes: dict[str, int]) -> list[str]:
    source = settings.data.source
    rows = [f"| {split} | {_dataset(source, split)[0]} | {n} |" for split, n in sizes.items()]
    return [
        "## Data",
        "",
        f"Data source `{source}`: trained on `train`, the search ranked trials on `validation`, "
        "and only the winners were scored on the test splits.",
        "",
        *(["| split | data | pairs |", "|---|---|---:|", *rows, ""] if rows else []),
    ]


def _search(best: Best, experiment: ExperimentRecord | None) -> list[str]:
    out = ["## Search", ""]
    if experiment:
        resolved = experiment.meta.settings
        out += [
            f"Experiment `{resolved.name}`, method `{resolved.method}`, trials ranked by "
            f"validation {resolved.search.metric} (hyperparameter search on Ray Tune).",
            "",
            "| stage | searcher | scheduler | trials | searched |",
            "|---|---|---|---:|---|",
        ]
        for stage in experiment.stages:
            trials = len(experiment.stage_trials(stage.stage))
            names = ", ".join(stage.searched) or "-"
            out.append(
                f"| {stage.stage} | {stage.searcher or '-'} | {stage.scheduler or '-'} | {trials} | {names} |"
            )
        out.append("")
    if best.soup and len(best.soup) > 1:
        others = ", ".join(f"`{name}`" for name in best.soup[1:])
        out.append(
            f"These weights are a greedy soup: the uniform average of the winner's checkpoint "
            f"(trial `{best.stage}/{best.trial_id}`, at its best epoch {best.best_epoch}) and of "
            f"{others}, each added only because the average scored better on validation "
            "(Wortsman et al. 2022). The winner's hyperparameters:"
        )
    else:
        out.append(
            f"The winner is trial `{best.stage}/{best.trial_id}`, at its best epoch "
            f"{best.best_epoch}. Its hyperparameters:"
        )
    training = TrialSettings.from_dict(best.config).training
    searched: dict[str, Any] = best.params or {}
    fixed = {k: getattr(training, k) for k in ("loss", "head", "num_epochs", "lr_schedule", "seed")}
    out += ["", "| hyperparameter | value |", "|---|---|"]
    out += [f"| {k} | {_value(v)} |" for k, v in fixed.items() if k not in searched]
    out += [f"| {k} (searched) | {_value(v)} |" for k, v in searched.items()]
    return [*out, ""]


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _results(best: Best) -> list[str]:
    out = ["## Results", "", "| split | " + " | ".join(METRICS) + " |", "|---" + "|---:" * len(METRICS) + "|"]
    rows = {"validation": best.validation or {}, **(best.test or {})}
    for split, metrics in rows.items():
        cells = [f"{metrics[k]:.4f}" if metrics.get(k) is not None else "-" for k in METRICS]
        out.append(f"| {split} | " + " | ".join(cells) + " |")
    out += [
        "",
        "F1: both the score and the gold label thresholded at 3.0 (KLUE-STS's binary label).",
        "",
    ]
    return out


def _winner_report(best: Best, experiment: ExperimentRecord | None) -> dict[str, Any]:
    """The winner's kept report (its row of ``result.json``) in the experiment's record, if any."""
    if experiment is None:
        return {}
    trial = next(
        (t for t in experiment.trials if (t.stage, t.trial_id) == (best.stage, best.trial_id)),
        None,
    )
    return (trial.best(experiment.metric) or {}) if trial else {}


def _hardware(best: Best, experiment: ExperimentRecord | None) -> list[str]:
    if experiment is None:
        return []
    meta, row = experiment.meta, _winner_report(best, experiment)
    out = []
    if meta.machine:
        out.append(f"- Machine: {meta.machine}.")
    if row.get(DEVICE):
        out.append(f"- The winner trained on `{row[DEVICE]}`.")
    plan = meta.hardware
    if plan is not None:
        reason = f" ({plan.precision_reason})" if plan.precision_reason else ""
        out.append(f"- Precision: {plan.precision}{reason}.")
        how = f"; chosen: {plan.resources}" if plan.resources else ""
        out.append(f"- Each trial: {plan.cpus_per_trial:g} CPU, {plan.gpus_per_trial:g} GPU{how}.")
        if plan.train_pairs_s:
            out.append(f"- Measured speed of one trial: {plan.train_pairs_s:,.0f} training pairs/s.")
    return ["## Hardware", "", *out, ""] if out else []


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _training_time(best: Best, experiment: ExperimentRecord | None) -> list[str]:
    if experiment is None:
        return []
    meta, row = experiment.meta, _winner_report(best, experiment)
    out = []
    if row.get(ELAPSED_S) is not None:
        out.append(
            f"- The winner: {_duration(row[ELAPSED_S])} of training to its kept epoch "
            f"({row.get(PAIRS, '?')} training pairs seen)."
        )
    if meta.search_wall_time_s is not None:
        trials = len(experiment.trials)
        out.append(
            f"- The whole search, {trials} trial{'s' * (trials != 1)}: {_duration(meta.search_wall_time_s)} wall time."
        )
    if meta.wall_time_s is not None:
        out.append(f"- The whole experiment (search, test scoring, export): {_duration(meta.wall_time_s)}.")
    return ["## Training time", "", *out, ""] if out else []


def _versions(experiment: ExperimentRecord | None) -> list[str]:
    versions = dict(experiment.meta.versions) if experiment else {}
    # The library the code below loads the folder with, as installed when the card was written.
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions.setdefault("sentence-transformers", metadata.version("sentence-transformers"))
    rows = [f"| {name} | {version} |" for name, version in versions.items()]
    return ["## Framework versions", "", "| package | version |", "|---|---|", *rows, ""]


def _line(score_map: tuple[float, float], term: str, digits: int) -> str:
    """``5 <term>`` or, for a fitted map, ``1.234 <term> - 0.567``, to ``digits`` significant digits."""
    scale, shift = score_map
    text = f"{scale:.{digits}g}{term}"
    return text if shift == 0 else f"{text} {'+' if shift > 0 else '-'} {abs(shift):.{digits}g}"


def _usage(settings: TrialSettings, name: str, score_map: tuple[float, float]) -> list[str]:
    a, b = EXAMPLE
    folder = FOLDER
    if settings.model.architecture == "bi":
        formula = _line(score_map, " * model.similarity_pairwise(a, b)", 8)  # what the model computes
        code = [
            "from sentence_transformers import SentenceTransformer",
            "",
            f'model = SentenceTransformer("{folder}")',
            f'a, b = model.encode(["{a}"]), model.encode(["{b}"])',
            f"scores = {formula}  # 0-5, one per pair",
        ]
    else:
        code = [
            "from sentence_transformers import CrossEncoder",
            "",
            f'model = CrossEncoder("{folder}")',
            f'scores = model.predict([("{a}", "{b}")])  # 0-5, one per pair',
        ]
        if settings.training.head == "multitask":
            code[-1] = code[-1].replace(
                "# 0-5, one per pair", "# per pair: [0-5 score, similar-or-not logit]"
            )
    return [
        "## Usage",
        "",
        f"`{folder}` is this folder, as the experiment folder `{name}` holds it: use its path "
        "wherever it is.",
        "",
        "```python",
        *code,
        "```",
        "",
        "With this project (the same scores, batched, as a REST API and a web page):",
        "",
        "```bash",
        f"python run_search.py serve {folder}",
        "```",
        "",
        f'In Python: `tuning.model.STSModel.from_pretrained("{folder}")` with '
        "`tuning.model.predict` gives 0-5 scores of sentence pairs.",
        "",
    ]
