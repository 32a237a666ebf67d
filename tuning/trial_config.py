"""The trial config: what Ray Tune hands ``train_trial``, built here and read here.

One shape, nested by concern, the way the experiment's settings are::

    {
      "data":     {...DataConfig},
      "model":    {...ModelConfig},       # a searched model field (num_hidden_layers) lands here
      "training": {...TrainingConfig},    # searched training fields (learning_rate, ...) land here
      "resources": {"cpus": 1.0, "gpus": 0.0},
      "tensorboard_dir": "<experiment>/tensorboard",
    }

A stage's ``param_space`` is this config with Ray Tune domains in place of the searched values
(:func:`with_values`); Ray's Optuna searcher flattens the nested space itself (Optuna names a
parameter ``training/learning_rate``). Ray stores each trial's resolved config as its
``params.json``, so the same shape is what storage holds and what ``seeds --from``, the winners'
scoring, the export and the server read back (:meth:`TrialSettings.from_dict`, :func:`trial_value`).

Configs written before 2026-11-30 were flat (training fields at the top level, ``data`` and
``model`` nested, ``cpus_per_trial``): :func:`normalize` still reads them. The reader of a stored
trial config (:func:`trial_value`, :func:`normalize`, :func:`section_of`) lives with the rest of
storage, in ``tuning.store``, and is re-exported here.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuning import settings
from tuning.settings import ALIASES, DataConfig, ExperimentConfig, ModelConfig, TrainingConfig
from tuning.store import TENSORBOARD_DIR, TRIAL_SECTIONS, normalize, section_of
from tuning.store import trial_value as trial_value  # the trial config's reader, with storage

SECTIONS: dict[str, type] = {k: settings.SECTIONS[k] for k in TRIAL_SECTIONS}
"""The sections of a trial config that hold settings (the search section stays with the driver)."""


def trial_config(exp: ExperimentConfig) -> dict[str, Any]:
    """The config every trial of ``exp`` starts from: its fixed values, before any search."""
    return {
        "data": asdict(exp.data),
        "model": asdict(exp.model),
        "training": asdict(exp.training),
        "resources": {"cpus": exp.search.cpus_per_trial, "gpus": exp.search.gpus_per_trial},
        "tensorboard_dir": str(Path(exp.experiment_dir, TENSORBOARD_DIR).resolve()),
    }


def with_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each of ``values`` (setting name -> value or Tune domain) in
    its section."""
    out = copy.deepcopy(normalize(config))
    for name, value in values.items():
        out[section_of(name)][ALIASES.get(name, name)] = value
    return out


def threads(resources: dict[str, Any]) -> int:
    """Torch threads of a trial: the CPUs it asked for (at least 1); ``auto`` (a config built
    without the driver) is resolved from this machine, as the driver would."""
    from tuning.hardware import resolve_resources, this_machine

    cpus, gpus = resources.get("cpus", 1), resources.get("gpus", 0)
    if cpus == "auto":
        cpus = resolve_resources(cpus, gpus, *this_machine()).cpus
    return max(1, int(cpus))


@dataclass
class TrialSettings:
    """A trial's resolved settings, read from its config (:meth:`from_dict`)."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    threads: int = 1
    """Torch threads: the CPUs Ray reserved for the trial (at least 1)."""
    tensorboard_dir: str | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrialSettings:
        """The settings of a trial config (today's nested shape, or an older flat one)."""
        config = normalize(config)
        return cls(
            data=DataConfig(**config.get("data", {})),
            model=ModelConfig(**config.get("model", {})),
            training=TrainingConfig(**config.get("training", {})),
            threads=threads(config.get("resources") or {}),
            tensorboard_dir=config.get("tensorboard_dir"),
        )
