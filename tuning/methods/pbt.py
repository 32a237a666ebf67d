"""The ``pbt`` method: Ray Tune's population-based training over learning rate and weight decay.

A population of ``search.num_samples`` trials trains side by side; every
``search.perturbation_interval`` epochs the bottom quarter copies a top-quarter trial's
checkpoint and continues with perturbed learning rate / weight decay (Ray's own transformers
example does the same). The other searched values are sampled once at the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuning.methods._stage import run_stage, trial_data
from tuning.settings import ConfigError, ExperimentConfig
from tuning.spaces import to_tune
from tuning.store import EPOCH

MUTABLE = ("learning_rate", "weight_decay")


KEEP_CHECKPOINTS = 4
"""Checkpoints per trial during PBT. With one, a donor's checkpoint was deleted before the trial
exploiting it could restore ("does not exist on storage anymore": 2 of 4 trials failed in the
search-efficiency benchmark); Ray warns below 3. The extra ones are removed after the search."""


def pbt_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Population-based training over the file's ``space``."""
    from ray.tune.schedulers import PopulationBasedTraining

    domains = to_tune(exp.space, f"{exp.source_file}: space: ")
    flat = {k: v for k, v in domains.items() if k in MUTABLE and hasattr(v, "sample")}
    mutations = {"training": flat}  # nested like the trial config (tuning.trial_config)
    if not flat:
        raise ConfigError(
            f"the pbt method needs `space:` domains for at least one of {list(MUTABLE)} in {exp.source_file}."
        )
    scheduler = PopulationBasedTraining(
        time_attr=EPOCH,  # perturbation_interval counts epochs, also with sub-epoch reports
        perturbation_interval=exp.search.perturbation_interval,
        hyperparam_mutations=mutations,  # type: ignore[arg-type]  # Ray's hint rejects nested dicts it accepts
        quantile_fraction=0.25,
        synch=False,
    )
    return [
        run_stage(
            exp,
            prefix + "pbt",
            exp.space,
            trial_data(splits),
            scheduler=scheduler,
            searcher=None,
            keep_checkpoints=KEEP_CHECKPOINTS,
        )
    ]
