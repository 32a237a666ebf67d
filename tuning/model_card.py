"""The model card (``README.md``) of an exported ``best_model``, in Hugging Face's conventions.

YAML front matter (base model, library, tags, datasets, language, pipeline tag, model-index with
the test scores), then the base model, the data, the search that chose the model, its validation
and test metrics, and how to load it. Built from what the export already holds: the winner's
record (``best.json``) and the experiment's record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuning.store import ExperimentRecord
from tuning.trial_config import TrialSettings

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
    ("klue-sts", "train"): ("KLUE-STS train (held-out part excluded)", "klue/klue", "sts", "train"),
    ("klue-sts", "validation"): ("KLUE-STS train (held-out part)", "klue/klue", "sts", "train"),
    ("klue-sts", "test"): ("KLUE-STS validation", "klue/klue", "sts", "validation"),
}
EXAMPLE = ("비행기가 이륙하고 있다.", "비행기가 이륙한다.")


def model_card(
    best: dict[str, Any],
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
    settings = TrialSettings.from_dict(best.get("config") or {})
    config = experiment.meta.config if experiment else {}
    sizes = experiment.meta.data_sizes if experiment else {}
    name = config.get("name") or "experiment"
    folder = f"{config.get('storage', 'runs')}/{name}/best_model"
    bi = settings.model.architecture == "bi"
    lines = [
        "---",
        yaml.safe_dump(_front_matter(best, settings, name), sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# Korean STS {'bi-encoder' if bi else 'cross-encoder'}: best model of `{name}`",
        "",
        "Scores the semantic similarity of two Korean sentences on KLUE-STS's 0-5 scale "
        + (
            f"as {_line(score_map, ' x the cosine', 4)} of their mean-pooled embeddings."
            if bi
            else "from the pair read as one sequence (the regression head outputs 0-5 directly)."
        ),
        "",
        *_base_model(settings),
        *_data(settings, sizes),
        *_search(best, config, experiment),
        *_results(best),
        *_usage(settings, folder, score_map),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a local path (the Hub rejects a path as ``base_model``)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def _dataset(source: str, split: str) -> tuple[str, str, str, str]:
    return DATASETS.get((source, split), (split, split, "", split))


def _front_matter(best: dict[str, Any], settings: TrialSettings, name: str) -> dict[str, Any]:
    bi = settings.model.architecture == "bi"
    source = settings.data.source
    kind = ["sentence-similarity", "feature-extraction"] if bi else ["cross-encoder", "text-classification"]
    task = "sentence-similarity" if bi else "text-classification"
    results = []
    for split, metrics in (best.get("test") or {}).items():
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
    front: dict[str, Any] = {}
    if _is_hub_id(settings.model.name_or_path):
        front["base_model"] = settings.model.name_or_path
    used = ("train", *(best.get("test") or {}))
    hub_ids = sorted({DATASETS[(source, s)][1] for s in used if (source, s) in DATASETS})
    front.update(
        library_name="sentence-transformers",
        pipeline_tag=task,
        language=["ko"],
        tags=["sentence-transformers", *kind, "korean", "sts", "ray-tune"],
        datasets=hub_ids,
        metrics=list(HF_METRICS.values()),
    )
    if results:
        front["model-index"] = [{"name": f"{name}-best_model", "results": results}]
    return front


def _base_model(settings: TrialSettings) -> list[str]:
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


def _search(best: dict[str, Any], config: dict[str, Any], experiment: ExperimentRecord | None) -> list[str]:
    out = ["## Search", ""]
    if experiment:
        search = config.get("search") or {}
        out += [
            f"Experiment `{config.get('name')}`, method `{config.get('method')}`, trials ranked by "
            f"validation {search.get('metric', 'pearson')} (hyperparameter search on Ray Tune).",
            "",
            "| stage | searcher | scheduler | trials | searched |",
            "|---|---|---|---:|---|",
        ]
        for stage in experiment.stages:
            trials = len(experiment.stage_trials(stage.stage))
            searched = ", ".join(stage.searched) or "-"
            out.append(
                f"| {stage.stage} | {stage.searcher or '-'} | {stage.scheduler or '-'} "
                f"| {trials} | {searched} |"
            )
        out.append("")
    out.append(
        f"The winner is trial `{best.get('stage')}/{best.get('trial_id')}`, at its best epoch "
        f"{best.get('best_epoch')}. Its hyperparameters:"
    )
    training = TrialSettings.from_dict(best.get("config") or {}).training
    searched = best.get("params") or {}
    fixed = {k: getattr(training, k) for k in ("loss", "head", "num_epochs", "lr_schedule", "seed")}
    out += ["", "| hyperparameter | value |", "|---|---|"]
    out += [f"| {k} | {_value(v)} |" for k, v in fixed.items() if k not in searched]
    out += [f"| {k} (searched) | {_value(v)} |" for k, v in searched.items()]
    return [*out, ""]


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _results(best: dict[str, Any]) -> list[str]:
    out = ["## Results", "", "| split | " + " | ".join(METRICS) + " |", "|---" + "|---:" * len(METRICS) + "|"]
    rows = {"validation": best.get("validation") or {}, **(best.get("test") or {})}
    for split, metrics in rows.items():
        cells = [f"{metrics[k]:.4f}" if metrics.get(k) is not None else "-" for k in METRICS]
        out.append(f"| {split} | " + " | ".join(cells) + " |")
    out += [
        "",
        "F1: both the score and the gold label thresholded at 3.0 (KLUE-STS's binary label).",
        "",
    ]
    return out


def _line(score_map: tuple[float, float], term: str, digits: int) -> str:
    """``5 <term>`` or, for a fitted map, ``1.234 <term> - 0.567``, to ``digits`` significant digits."""
    scale, shift = score_map
    text = f"{scale:.{digits}g}{term}"
    return text if shift == 0 else f"{text} {'+' if shift > 0 else '-'} {abs(shift):.{digits}g}"


def _usage(settings: TrialSettings, folder: str, score_map: tuple[float, float]) -> list[str]:
    a, b = EXAMPLE
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
