"""The trial config: one nested shape, built and read in tuning.trial_config."""

from __future__ import annotations

import pytest
from ray import tune

from tuning.settings import ExperimentConfig
from tuning.trial_config import (
    TrialSettings,
    normalize,
    section_of,
    trial_config,
    trial_value,
    with_values,
)


def test_a_trial_config_is_nested_by_section() -> None:
    exp = ExperimentConfig(name="x", storage="/runs")
    config = trial_config(exp)
    assert set(config) == {"data", "model", "training", "resources", "tensorboard_dir"}
    assert config["training"]["learning_rate"] == exp.training.learning_rate
    assert config["model"]["name_or_path"] == exp.model.name_or_path
    assert config["resources"] == {"cpus": exp.search.cpus_per_trial, "gpus": exp.search.gpus_per_trial}
    assert config["tensorboard_dir"].endswith("/runs/x/tensorboard")


def test_searched_values_land_in_their_section_and_the_base_is_not_changed() -> None:
    base = trial_config(ExperimentConfig())
    domain = tune.loguniform(1e-5, 1e-4)
    space = with_values(base, {"learning_rate": domain, "num_hidden_layers": 4, "lambda": 0.3})
    assert space["training"]["learning_rate"] is domain
    assert space["model"]["num_hidden_layers"] == 4
    assert space["training"]["mtl_lambda"] == 0.3  # the YAML alias
    assert base["training"]["learning_rate"] == 5e-5 and base["model"]["num_hidden_layers"] is None
    assert trial_value(space, "num_hidden_layers") == 4


def test_section_of_names_every_field_and_refuses_others() -> None:
    assert section_of("learning_rate") == "training"
    assert section_of("max_length") == "model"
    assert section_of("train_size") == "data"
    with pytest.raises(KeyError, match="not_a_setting"):
        section_of("not_a_setting")


def test_a_flat_config_of_an_older_version_reads_the_same() -> None:
    """params.json written before 2026-11-30: training fields at the top, a searched model field too."""
    flat = {
        "data": {"source": "korsts"},
        "model": {"name_or_path": "builtin:tiny", "max_length": 64},
        "learning_rate": 3e-5,
        "batch_size": 16,
        "max_length": 32,  # searched: wins over the model section's fixed value
        "cpus_per_trial": 2,
        "gpus_per_trial": 0,
        "tensorboard_dir": "/tb",
    }
    settings = TrialSettings.from_dict(flat)
    assert settings.training.learning_rate == 3e-5 and settings.training.batch_size == 16
    assert settings.model.max_length == 32 and settings.threads == 2 and settings.tensorboard_dir == "/tb"
    assert trial_value(flat, "max_length") == 32
    assert normalize(normalize(flat)) == normalize(flat)
    assert TrialSettings.from_dict(trial_config(ExperimentConfig())) == TrialSettings.from_dict(
        normalize(trial_config(ExperimentConfig()))
    )
