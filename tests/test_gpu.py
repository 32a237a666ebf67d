"""The GPU paths: mixed precision and fractional GPUs. They need a CUDA GPU and are skipped, with
that reason, where there is none (CI has none; run `python -m pytest -m gpu` on a GPU machine)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from reports import read_experiment
from tests.conftest import run_cli
from tests.test_trial import settings, train
from tuning.store import ELAPSED_S, STARTED_AT
from tuning.trial import REPORTED

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize(
    ("architecture", "head", "loss"), [("cross", "multitask", "corr_mae"), ("bi", "regression", "mse")]
)
def test_mixed_precision_trains_on_the_gpu(small_splits, tmp_path, precision, architecture, head, loss):
    # Eight epochs of 4 steps of a test-size model. The loss of one epoch is noisy (on an H200,
    # cross/corr_mae: 1.33, 1.27, 1.34, 1.28, 1.09, 1.36, 1.30, 1.12 in fp16), so the later half's
    # mean is compared with the first epoch's; fp16's loss scaler also skips its first steps.
    s = settings(architecture, head=head, loss=loss, precision=precision, num_epochs=8)
    reports, _ = train(s, small_splits, tmp_path)
    assert [r["device"] for r in reports] == ["cuda:0"] * 8
    for r in reports:
        assert all(np.isfinite(r[k]) for k in REPORTED), r  # no overflow to inf/NaN in half precision
    # It learns: the training loss of the later epochs is below the first's.
    assert np.mean([r["train_loss"] for r in reports[4:]]) < reports[0]["train_loss"]


def test_fractional_gpus_run_trials_side_by_side_on_one_gpu(tmp_path):
    proc = run_cli(
        "--method", "optuna", "--profile", "cpu", "--smoke-test",
        "--gpus-per-trial", "0.5", "--cpus-per-trial", "1", "--data.train_size", "1024",
        "--storage", str(tmp_path), "--name", "fractional",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "fractional"
    record = read_experiment(exp)
    assert len(record.trials) == 2  # a smoke test's budget
    assert all(e["device"] == "cuda:0" for t in record.trials for e in t.reports)
    # Packed on one GPU: some trials were running at the same time (each trial's exact span: Ray's
    # timestamp is in whole seconds, and a smoke trial lasts a few).
    spans = sorted(
        (t.reports[0][STARTED_AT], t.reports[-1][STARTED_AT] + t.reports[-1][ELAPSED_S])
        for t in record.trials
    )
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    meta = json.loads((exp / "experiment.json").read_text(encoding="utf-8"))
    assert meta["ray_resources"]["GPU"] >= 1
