"""TensorBoard of a real (tiny) trial: the HParams dashboard lists the trial's hyperparameters
with its best validation Pearson and F1, all inside the trial's own run folder, and every scalar
is stepped by training pairs seen (what ASHA counts in). That a search leaves no second run (Ray's
own TensorBoard files) in the trial folders is checked on a smoke search in ``test_study.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuning.settings import DataConfig, ModelConfig, TrainingConfig
from tuning.trial import HPARAM_METRICS, TrialSettings, run_training, tensorboard_hparams


def settings(log_dir: Path | None = None) -> TrialSettings:
    return TrialSettings(
        data=DataConfig(),
        model=ModelConfig(name_or_path="builtin:tiny", architecture="cross", max_length=64),
        training=TrainingConfig(num_epochs=2, batch_size=16, learning_rate=1e-3, logging_steps=1),
        tensorboard_dir=str(log_dir) if log_dir else None,
    )


@pytest.fixture(scope="module")
def trial_run(small_splits, tmp_path_factory) -> tuple[Path, list[dict]]:
    """One trained trial's TensorBoard folder and its per-epoch reports."""
    root = tmp_path_factory.mktemp("tb")
    log_dir = root / "tensorboard" / "optuna_aaaa"
    reports: list[dict] = []
    run_training(settings(log_dir), small_splits, str(root / "out"), lambda m, c: reports.append(m))
    return log_dir, reports


def hparams_content(log_dir: Path) -> dict[str, bytes]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events.PluginTagToContent("hparams")


def test_hparams_are_the_training_settings_and_the_model_shape() -> None:
    hp = tensorboard_hparams(settings(), num_layers=2)
    assert hp["learning_rate"] == 1e-3 and hp["batch_size"] == 16 and hp["loss"] == "mse"
    assert (hp["model"], hp["architecture"], hp["num_hidden_layers"]) == ("builtin:tiny", "cross", 2)
    assert hp["standardize_targets"] == "True"  # booleans as text: HParams would show 1.0
    assert "logging_steps" not in hp and "eval_batch_size" not in hp
    assert all(isinstance(v, (int, float, str)) for v in hp.values())


def test_the_run_has_experiment_session_start_and_end_in_its_own_folder(trial_run) -> None:
    from tensorboard.plugins.hparams import metadata

    log_dir, _ = trial_run
    content = hparams_content(log_dir)
    assert set(content) == {
        metadata.EXPERIMENT_TAG,
        metadata.SESSION_START_INFO_TAG,
        metadata.SESSION_END_INFO_TAG,
    }
    # No timestamped sub-run (what SummaryWriter.add_hparams would create).
    assert [p for p in log_dir.iterdir() if p.is_dir()] == []
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in experiment.metric_infos] == list(HPARAM_METRICS)
    names = {h.name for h in experiment.hparam_infos}
    assert {"learning_rate", "batch_size", "warmup_ratio", "architecture", "num_hidden_layers"} <= names
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["learning_rate"].number_value == pytest.approx(1e-3)
    assert start.hparams["num_hidden_layers"].number_value == 2  # the tiny model as built
    assert start.hparams["architecture"].string_value == "cross"


def test_best_metrics_are_scalars_of_the_best_epoch_so_far(trial_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir, reports = trial_run
    events = EventAccumulator(str(log_dir))
    events.Reload()
    for tag, name in HPARAM_METRICS.items():
        values = [e.value for e in events.Scalars(tag)]
        running = [max(r[name] for r in reports[: i + 1]) for i in range(len(reports))]
        assert values == pytest.approx(running, abs=1e-6)
        assert [e.step for e in events.Scalars(tag)] == [r["pairs"] for r in reports]


def test_train_and_validation_scalars_are_stepped_by_training_pairs(trial_run) -> None:
    """64 pairs in batches of 16, logged every optimizer step, evaluated once an epoch."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir, reports = trial_run
    events = EventAccumulator(str(log_dir))
    events.Reload()
    assert [r["pairs"] for r in reports] == [64, 128]
    train = [e.step for e in events.Scalars("train/loss")]
    assert train == list(range(16, 129, 16))  # one step of 16 pairs after another, both epochs
    assert [e.step for e in events.Scalars("train/learning_rate")] == train
    for name in ("pearson", "f1", "loss"):
        assert [e.step for e in events.Scalars(f"validation/{name}")] == [64, 128]
    # The same x at an epoch's end on both curves: the same unit.
    assert {64, 128} <= set(train)


def test_hparams_dashboard_reads_the_trial(trial_run) -> None:
    """TensorBoard's own HParams backend finds the metric columns and the trial's values."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    log_dir, reports = trial_run
    logdir = str(log_dir.parent)
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    context = backend_context.Context(base_plugin.TBContext(logdir=logdir, data_provider=provider))
    ctx = _request_context()
    content = context.hparams_metadata(ctx, "")
    experiment = context.experiment_from_metadata(ctx, "", True, content, None)
    assert [m.name.tag for m in experiment.metric_infos] == list(HPARAM_METRICS)
    assert list(content) == [log_dir.name]  # one run: the trial's own folder
    last = context.read_last_scalars(ctx, "", None)
    assert last[log_dir.name]["best/pearson"].value == pytest.approx(max(r["pearson"] for r in reports))


def _request_context():
    from tensorboard import context

    return context.RequestContext()


def test_a_full_disk_in_the_writer_thread_is_raised_on_the_trials_thread_without_a_traceback(
    tmp_path: Path,
) -> None:
    """TensorBoard writes events from a background thread: on a full disk (``/dev/full``, a real
    ENOSPC) that thread used to print its traceback, which Ray forwarded to the terminal beside
    the trial's one-line failure. Now only the trial's own thread raises it."""
    import threading

    from tensorboard.summary.writer.event_file_writer import _AsyncWriter
    from tensorboard.summary.writer.record_writer import RecordWriter

    from tuning.trial import TensorBoardWriter

    seen: list[BaseException | None] = []
    before = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value)  # what would print a traceback
    try:
        TensorBoardWriter(str(tmp_path / "run"))  # chains its hook in front, as a trial's does
        with open("/dev/full", "wb", buffering=0) as full:
            writer = _AsyncWriter(RecordWriter(full), max_queue_size=10, flush_secs=120)
            writer.write(b"x" * 64)
            writer._worker.join(timeout=10)  # the thread ended on the error
            with pytest.raises(OSError, match="No space left on device"):
                writer.write(b"x" * 64)
        other = threading.Thread(target=lambda: 1 / 0)
        other.start()
        other.join()
    finally:
        threading.excepthook = before
    assert [type(e) for e in seen] == [ZeroDivisionError]  # another thread's error still reaches it
