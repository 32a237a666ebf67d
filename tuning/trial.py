"""One trial: fine-tune a model with the HF Trainer and report validation metrics every evaluation.

A trial evaluates, checkpoints and reports once per epoch, or every ``eval_every_pairs``
training pairs (sub-epoch fidelity). Each report (:class:`EvalReporter`; its keys are named in
``tuning.store``) carries ``pairs`` (training pairs seen so far), the unit ASHA's rungs are
counted in, and ``epoch`` (``pairs`` / train size, fractional between epoch ends).

``train_trial(config)`` is the function Ray Tune runs; it depends on Tune only through
``report`` and ``get_checkpoint``. :func:`run_training` is the same run without Tune (benchmarks,
seed repeats, tests), taking a plain ``report(metrics, checkpoint_dir)`` callable.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import datasets
import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging

from tuning.cost import SERVING_COST, full_depth, level_key
from tuning.hardware import trial_precision
from tuning.losses import EMBEDDING_LOSSES, SCALE_FREE_LOSSES, make_loss
from tuning.metrics import compute_all
from tuning.model import PairCollator, STSModel, build_model, encode, load_tokenizer
from tuning.schedules import make_schedule
from tuning.settings import TrainingConfig, field_names
from tuning.store import DEVICE, ELAPSED_S, EPOCH, LEARNING_RATE, PAIRS, STARTED_AT, STEP, TRAIN_LOSS
from tuning.trial_config import TrialSettings

# Validation metrics every report carries (``loss`` is the validation loss).
REPORTED = ("pearson", "f1", "spearman", "mse", "loss")
Report = Callable[[dict[str, Any], "str | None"], None]


def target_transform(settings: TrialSettings, train_labels: np.ndarray) -> tuple[float, float]:
    """(scale, shift) with ``score = raw * scale + shift``.

    ``bi`` scores are 5 x cosine (a scale-free loss refits the line: :class:`STSTrainer`). A
    ``cross`` regression head is trained on standardized labels (train mean/std) unless
    ``standardize_targets`` is off.
    """
    if settings.model.architecture == "bi":
        return 5.0, 0.0
    if settings.training.standardize_targets:
        return float(np.std(train_labels)) or 1.0, float(np.mean(train_labels))
    return 1.0, 0.0


# Training pairs a scale-free loss's score map is fitted on before each evaluation (fixed per trial).
CALIBRATION_PAIRS = 512


def fit_score_map(raw: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """Least-squares ``(scale, shift)`` with ``labels ~ raw * scale + shift``.

    ``None`` when the fit cannot be a score map: ``raw`` is constant or not finite, or the line
    is not increasing (it would reverse the ranking the model learned).
    """
    raw, labels = np.asarray(raw, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if raw.size < 2 or not np.isfinite(raw).all() or np.ptp(raw) == 0:
        return None  # too few, diverged (the evaluation then says so), or constant
    scale, shift = np.polyfit(raw, labels, 1)
    return (float(scale), float(shift)) if scale > 0 else None


class STSTrainer(Trainer):
    """The HF Trainer with this project's losses, multi-task term and LR schedules.

    ``target`` is the fixed ``(scale, shift)`` the loss sees labels through (:func:`target_transform`).
    Losses in :data:`SCALE_FREE_LOSSES` do not train the scores' scale (CoSENT, AnglE) or train it
    weakly (``corr_mae``: measured, after one epoch at alpha 0.1 e5's 5 x cosine still called every
    pair similar). With them the trainer fits ``score = raw * scale + shift`` on ``calibration`` (a
    fixed sample of training pairs) before each evaluation. Pearson and Spearman are unchanged (a
    rising line); F1 at 3.0 and MSE become meaningful; the map is the model's ``target_scale`` /
    ``target_shift`` buffers, saved with each checkpoint, so test scoring, export and serving use it.
    """

    def __init__(
        self,
        *args: Any,
        training: TrainingConfig,
        target: tuple[float, float] = (1.0, 0.0),
        calibration: datasets.Dataset | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.training = training
        self.target = target
        self.calibration = calibration
        params = {"alpha": training.alpha} if training.loss == "corr_mae" else {}
        self.score_loss = make_loss(training.loss, **params)
        self.binary_loss = make_loss("bce")

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        out = model(**inputs)
        on_embeddings = self.training.loss in EMBEDDING_LOSSES  # CoSENT, AnglE: bi-encoders only
        if on_embeddings:  # they rank pairs by label: the label scale is theirs as it is
            loss = self.score_loss(out["embeddings"], inputs["labels"])
        else:
            scale, shift = self.target
            loss = self.score_loss(out["raw"], (inputs["labels"] - shift) / scale)
        if "binary_logits" in out:
            loss = loss + self.training.mtl_lambda * self.binary_loss(
                out["binary_logits"], inputs["binary_labels"]
            )
        return (loss, {"scores": out["scores"]}) if return_outputs else loss

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        if self.calibration is not None:
            self.calibrate()
        return super().evaluate(*args, **kwargs)

    def calibrate(self) -> None:
        """Fit the score map on ``calibration`` (see the class); kept as it was if none fits."""
        raw, labels = [], []
        model = cast(STSModel, self.model)  # set by the Trainer's constructor
        model.eval()
        with torch.no_grad():
            for batch in self.get_test_dataloader(cast(Dataset, self.calibration)):  # never cached as "eval"
                batch = self._prepare_inputs(batch)
                raw.append(model(**batch)["raw"].float().cpu())
                labels.append(batch["labels"].float().cpu())
        fitted = fit_score_map(torch.cat(raw).numpy(), torch.cat(labels).numpy())
        if fitted is not None:
            sts: STSModel = self.accelerator.unwrap_model(self.model)
            sts.target_scale.fill_(fitted[0])
            sts.target_shift.fill_(fitted[1])

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> Any:
        if self.lr_scheduler is None:
            epochs = max(1, int(self.args.num_train_epochs))
            self.lr_scheduler = make_schedule(
                self.training.lr_schedule,
                cast(torch.optim.Optimizer, optimizer or self.optimizer),  # created before the schedule
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                steps_per_epoch=max(1, math.ceil(num_training_steps / epochs)),
                step_epochs=self.training.step_epochs,
                step_gamma=self.training.step_gamma,
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """Trainer hook: KLUE metrics of 0-5 predictions against gold labels."""
    labels = eval_pred.label_ids[0] if isinstance(eval_pred.label_ids, tuple) else eval_pred.label_ids
    return compute_all(np.asarray(eval_pred.predictions).reshape(-1), np.asarray(labels).reshape(-1))


@dataclass(frozen=True)
class Fidelity:
    """When a trial evaluates: ``per_epoch`` evaluations evenly spread over each epoch's steps.

    Steps per epoch are ``ceil(num_pairs / batch_size)`` (the last batch may be short), so the
    pairs seen after global step ``g`` are ``full epochs x num_pairs + min(rest x batch_size,
    num_pairs)`` exactly.
    """

    num_pairs: int
    batch_size: int
    per_epoch: int = 1

    @classmethod
    def of(cls, training: TrainingConfig, num_pairs: int) -> Fidelity:
        steps = math.ceil(num_pairs / training.batch_size)
        every = training.eval_every_pairs
        per_epoch = 1 if every is None else max(1, min(steps, round(num_pairs / every)))
        return cls(num_pairs, training.batch_size, per_epoch)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_pairs / self.batch_size)

    def is_evaluation(self, global_step: int) -> bool:
        """Whether the trial evaluates after this optimizer step (always at an epoch's end)."""
        rest = global_step % self.steps_per_epoch
        if rest == 0:
            return global_step > 0
        return any(round(j * self.steps_per_epoch / self.per_epoch) == rest for j in range(1, self.per_epoch))

    def pairs(self, global_step: int) -> int:
        """Training pairs seen after ``global_step`` optimizer steps."""
        epoch, rest = divmod(global_step, self.steps_per_epoch)
        return epoch * self.num_pairs + min(rest * self.batch_size, self.num_pairs)

    def evaluation_index(self, global_step: int) -> int:
        """1, 2, ... for a trial's successive evaluations (the epoch when once per epoch)."""
        epoch, rest = divmod(global_step, self.steps_per_epoch)
        within = sum(
            round(j * self.steps_per_epoch / self.per_epoch) <= rest for j in range(1, self.per_epoch + 1)
        )
        return epoch * self.per_epoch + within


class EvaluationSchedule(TrainerCallback):
    """Asks the Trainer to evaluate and checkpoint at the :class:`Fidelity`'s steps."""

    def __init__(self, fidelity: Fidelity) -> None:
        self.fidelity = fidelity

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.fidelity.is_evaluation(state.global_step):
            control.should_evaluate = control.should_save = True


class EvalReporter(TrainerCallback):
    """After each evaluation and checkpoint: report the validation metrics, the progress and
    the checkpoint folder (one report row: its keys are ``tuning.store``'s)."""

    def __init__(self, report: Report, model: STSModel, started: float, fidelity: Fidelity) -> None:
        self.report = report
        self.model = model
        self.started = started
        self.fidelity = fidelity
        self.metrics: dict[str, Any] = {}
        self.train_loss: list[float] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.train_loss.append(float(logs["loss"]))

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any
    ) -> None:
        metrics = metrics or {}
        self.metrics = {
            name: float(metrics[f"eval_{name}"]) for name in REPORTED if f"eval_{name}" in metrics
        }

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir, f"checkpoint-{state.global_step}")
        self.model.save_meta(folder)
        last_lr = next(
            (h["learning_rate"] for h in reversed(state.log_history) if "learning_rate" in h), None
        )
        pairs = self.fidelity.pairs(state.global_step)
        result = {
            **self.metrics,
            EPOCH: round(pairs / self.fidelity.num_pairs, 4),
            PAIRS: pairs,  # ASHA's time attribute: rungs are counted in training pairs
            STEP: state.global_step,
            TRAIN_LOSS: float(np.mean(self.train_loss)) if self.train_loss else float("nan"),
            LEARNING_RATE: last_lr,
            ELAPSED_S: time.time() - self.started,
            STARTED_AT: self.started,
            DEVICE: str(args.device),  # cpu, cuda:0, ...: where this trial trained
        }
        self.train_loss = []
        self.report(result, str(folder))


class ApplyHyperparameters(TrainerCallback):
    """On resume, train with this trial's learning rate and weight decay, not the checkpoint's.

    PBT continues a trial from another trial's checkpoint with perturbed values; the Trainer
    restores the optimizer and schedule of the checkpoint, which would silently keep the
    donor's values. Runs after the restore (``on_train_begin``); a no-op for fresh runs.
    """

    def __init__(self, training: TrainingConfig) -> None:
        self.training = training

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer, scheduler = kwargs.get("optimizer"), kwargs.get("lr_scheduler")
        if state.global_step == 0 or optimizer is None or scheduler is None:
            return
        scheduler = getattr(scheduler, "scheduler", scheduler)  # unwrap accelerate's wrapper
        lr = self.training.learning_rate
        scheduler.base_lrs = [lr] * len(optimizer.param_groups)
        for i, group in enumerate(optimizer.param_groups):
            group["initial_lr"] = lr
            group["lr"] = lr * scheduler.lr_lambdas[i](scheduler.last_epoch)
        # The Trainer puts weights that decay in the first group and biases/LayerNorm in the second.
        if len(optimizer.param_groups) == 2:
            optimizer.param_groups[0]["weight_decay"] = self.training.weight_decay


# Hyperparameters' values TensorBoard's HParams dashboard lists per trial, and the metrics it
# shows beside them (written as scalars too: each one's best value so far).
HPARAM_METRICS = {"best/pearson": "pearson", "best/f1": "f1"}
# TrainingConfig fields that cannot change a trial's result, left out of the HParams table.
NOT_HPARAMS = ("logging_steps", "eval_batch_size")


def tensorboard_hparams(settings: TrialSettings, num_layers: int | None = None) -> dict[str, Any]:
    """A trial's hyperparameters for TensorBoard: the training settings and the model's shape.

    The same names for every trial (TensorBoard takes the columns from any one run), so settings
    fixed in a search show as constant columns. Values are numbers or strings (HParams types).

    Args:
        settings: the trial's settings.
        num_layers: the encoder's layer count as built (``num_hidden_layers`` may be ``None``:
            all of the pretrained model's layers).
    """
    out: dict[str, Any] = {
        "model": settings.model.name_or_path,
        "architecture": settings.model.architecture,
        "num_hidden_layers": num_layers or settings.model.num_hidden_layers or 0,
        "max_length": settings.model.max_length,
    }
    for name in field_names(TrainingConfig):
        value = getattr(settings.training, name)
        if name not in NOT_HPARAMS:
            out[name] = str(value) if isinstance(value, bool) or value is None else value
    return out


class QuietWriterThreads:
    """A ``threading.excepthook`` for trials: an error in TensorBoard's background writer thread
    (a full disk) prints no traceback there. The writer keeps the error and raises it again on
    the trial's own thread at its next write, so the trial fails with it as one line (issue 29)
    instead of a thread's traceback also reaching the terminal through Ray's log forwarding.
    Every other thread's error goes to the hook that was installed before."""

    def __init__(self, previous: Callable[[threading.ExceptHookArgs], Any]) -> None:
        self.previous = previous

    def __call__(self, args: threading.ExceptHookArgs) -> None:
        from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

        if isinstance(args.thread, _AsyncWriterThread) and args.thread.exception is args.exc_value:
            return
        self.previous(args)

    @classmethod
    def install(cls) -> None:
        """Chain it in front of the current hook, once."""
        if not isinstance(threading.excepthook, cls):
            threading.excepthook = cls(threading.excepthook)


class TensorBoardWriter(TrainerCallback):
    """Clean per-trial TensorBoard runs: train/loss, train/learning_rate, validation/<metric>,
    and the trial's hyperparameters with its best validation Pearson and F1 (HParams dashboard).

    Every scalar's step is the training pairs seen when it was logged (:meth:`Fidelity.pairs`,
    the unit ASHA counts in and reports carry as ``pairs``), so training and validation curves
    share one x axis, and trials of different batch sizes or evaluation frequencies line up.
    Everything goes to the trial's own run folder: the HParams summaries are written with the
    run's own file writer (``SummaryWriter.add_hparams`` would open a timestamped sub-run).
    """

    def __init__(
        self, log_dir: str, settings: TrialSettings | None = None, fidelity: Fidelity | None = None
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        QuietWriterThreads.install()
        self.writer = SummaryWriter(log_dir=log_dir)
        self.settings = settings
        self.fidelity = fidelity
        self.best: dict[str, float] = {}
        self.session_end: Any = None

    @property
    def file_writer(self) -> Any:
        """The writer's own event file writer (typed optional by torch: it is set until ``close``)."""
        return self.writer.file_writer

    def pairs(self, args: Any, state: Any) -> int:
        """Training pairs seen after the current optimizer step: every scalar's step."""
        if self.fidelity is not None:
            return self.fidelity.pairs(state.global_step)
        # Without the trial's fidelity: whole batches (a short last batch counts as full).
        return state.global_step * args.train_batch_size * args.gradient_accumulation_steps

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.settings is None:
            return
        from torch.utils.tensorboard.summary import hparams

        # A resumed trial continues its best-so-far from the restored Trainer history.
        for entry in state.log_history:
            self._update_best(entry)
        layers = getattr(getattr(kwargs.get("model"), "config", None), "num_hidden_layers", None)
        experiment, session_start, self.session_end = hparams(
            tensorboard_hparams(self.settings, layers), dict.fromkeys(HPARAM_METRICS, 0.0)
        )
        step = self.pairs(args, state)
        self.file_writer.add_summary(experiment, step)
        self.file_writer.add_summary(session_start, step)
        self.writer.flush()

    def _update_best(self, metrics: dict[str, Any]) -> None:
        for tag, name in HPARAM_METRICS.items():
            value = metrics.get(f"eval_{name}")
            if value is not None and math.isfinite(value):
                self.best[tag] = max(value, self.best.get(tag, -math.inf))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        for key in ("loss", "learning_rate", "grad_norm"):
            if logs and key in logs:
                self.writer.add_scalar(f"train/{key}", logs[key], self.pairs(args, state))

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any
    ) -> None:
        step = self.pairs(args, state)
        for key, value in (metrics or {}).items():
            name = key.removeprefix("eval_")
            if name in REPORTED:
                self.writer.add_scalar(f"validation/{name}", value, step)
        self._update_best(metrics or {})
        for tag, value in self.best.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # A trial stopped early by the scheduler never gets here: TensorBoard shows no end status.
        if self.session_end is not None:
            self.file_writer.add_summary(self.session_end, self.pairs(args, state))
        self.writer.close()


def training_arguments(settings: TrialSettings, output_dir: str) -> TrainingArguments:
    """Trainer arguments for one trial: keep one checkpoint; :class:`EvaluationSchedule` says when
    to evaluate and checkpoint."""
    t = settings.training
    cuda = torch.cuda.is_available()
    precision = trial_precision(t.precision, settings.model.name_or_path)  # `auto`: resolved here, once
    return TrainingArguments(
        output_dir=output_dir,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        num_train_epochs=t.num_epochs,
        weight_decay=t.weight_decay,
        # A ratio, on purpose: transformers 5 has no `warmup_ratio` argument; `warmup_steps` takes
        # a float in [0, 1) as a fraction of all optimizer steps (5.23's get_warmup_steps:
        # ceil(num_training_steps * warmup_steps); values >= 1 are whole steps), and config
        # validation keeps training.warmup_ratio in [0, 1).
        warmup_steps=t.warmup_ratio,
        seed=t.seed,
        data_seed=t.seed,
        eval_strategy="no",  # EvaluationSchedule asks for evaluations and checkpoints
        save_strategy="no",
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        label_names=["labels", "binary_labels"],
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=cuda,
    )


def freeze_lower_layers(model: STSModel, embeddings: bool, layers: int) -> None:
    """Freeze the encoder's embeddings (``embeddings`` or ``layers`` > 0) and its first ``layers``
    layers; a no-op when neither is asked for.

    Raises:
        ValueError: if the encoder has fewer layers than asked to freeze.
    """
    if not embeddings and layers <= 0:
        return
    total = model.config.num_hidden_layers
    if layers > total:
        raise ValueError(f"training.freeze_layers={layers}, but the encoder has only {total} layers.")
    frozen = ("embeddings.", *(f"encoder.layer.{i}." for i in range(layers)))
    for name, param in model.named_parameters():
        if any(f".{prefix}" in f".{name}" for prefix in frozen):
            param.requires_grad_(False)


def trial_model(
    settings: TrialSettings, train: datasets.Dataset
) -> tuple[Any, STSModel, tuple[float, float]]:
    """The tokenizer, the model a trial fine-tunes (its frozen layers frozen) and its target
    ``(scale, shift)`` (:func:`target_transform`); the throughput probe builds the same one."""
    tokenizer = load_tokenizer(settings.model, list(train["sentence1"]) + list(train["sentence2"]))
    scale, shift = target_transform(settings, np.asarray(train["label"]))
    model = build_model(settings.model, tokenizer, settings.training.head, scale, shift)
    freeze_lower_layers(model, settings.training.freeze_embeddings, settings.training.freeze_layers)
    return tokenizer, model, (scale, shift)


def run_training(
    settings: TrialSettings,
    splits: DatasetDict,
    output_dir: str,
    report: Report,
    resume_from: str | None = None,
    pad_to: int | None = None,
) -> None:
    """Fine-tune on ``splits['train']``, evaluating on ``splits['validation']`` every epoch.

    Args:
        settings: the trial's data, model and training settings.
        splits: at least ``train`` and ``validation`` (canonical columns).
        output_dir: where the Trainer writes its checkpoints.
        report: called after every evaluation with the metrics and its checkpoint folder.
        resume_from: a checkpoint folder to continue from (model, optimizer, schedule, RNG, epoch).
        pad_to: pad every batch to this many tokens instead of its longest input (benchmarks of
            fixed padding; keep it >= ``max_length``, longer inputs are cut). ``None``: per batch.
    """
    started = time.time()
    # 1. Threads and seeds first: model initialisation draws random numbers.
    torch.set_num_threads(settings.threads)
    set_seed(settings.training.seed)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # 2. Tokenizer and model (the tiny test model builds its vocabulary from the training text).
    train, validation = splits["train"], splits["validation"]
    tokenizer, model, (scale, shift) = trial_model(settings, train)
    arch, max_len = settings.model.architecture, settings.model.max_length
    train_enc = encode(train, tokenizer, arch, max_len)
    validation_enc = encode(validation, tokenizer, arch, max_len)
    # 3. The Trainer.
    fidelity = Fidelity.of(settings.training, len(train))
    scale_free = settings.training.loss in SCALE_FREE_LOSSES  # its score map is fitted: STSTrainer
    callbacks: list[TrainerCallback] = [
        EvaluationSchedule(fidelity),
        EvalReporter(report, model, started, fidelity),
        ApplyHyperparameters(settings.training),
    ]
    if settings.tensorboard_dir:
        callbacks.append(TensorBoardWriter(settings.tensorboard_dir, settings, fidelity))
    trainer = STSTrainer(
        model=model,
        args=training_arguments(settings, output_dir),
        data_collator=PairCollator(tokenizer.pad_token_id, pad_to),
        train_dataset=train_enc,
        eval_dataset=validation_enc,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        training=settings.training,
        target=(scale, shift),
        calibration=calibration_sample(train_enc, settings) if scale_free else None,
    )
    trainer.remove_callback(PrinterCallback)  # progress is Tune's to print, once per epoch
    # 4. Train; a resumed trial continues after its last completed epoch.
    trainer.train(resume_from_checkpoint=resume_from)


def calibration_sample(train: datasets.Dataset, settings: TrialSettings) -> datasets.Dataset:
    """The trial's fixed sample of :data:`CALIBRATION_PAIRS` training pairs (all when fewer)."""
    if len(train) <= CALIBRATION_PAIRS:
        return train
    return train.shuffle(seed=settings.training.seed).select(range(CALIBRATION_PAIRS))


# The Trainer's output folders (an epoch's checkpoint before Tune copies it to storage), one
# parent per machine. A trial removes its own when it ends, fails or is stopped; one left by a
# killed process is removed by the next trial on that machine.
SCRATCH = Path(tempfile.gettempdir(), "klue-tune-trials")


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A trial's scratch folder ``SCRATCH/trial-<pid>-*``, after pruning those of dead processes."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    for folder in SCRATCH.glob("trial-*-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"trial-{os.getpid()}-", dir=SCRATCH)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_MALLOC_TRIM = _glibc_malloc_trim()


def release_freed_memory() -> None:
    """Free what finished trials left behind in this process and give the pages back to the OS.

    Tune reuses a worker for trial after trial (``reuse_actors``), each trial in a new thread.
    A finished trial's model, optimizer and batches are garbage (some in reference cycles only
    the collector frees), and glibc keeps the heap pages they were freed into mapped, in that
    thread's arena. Without this a reused worker grew from 1.6 to 5.4 GiB over a search's trials.
    """
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def checkpoint_exists(checkpoint: Any) -> bool:
    """Whether a Tune checkpoint's folder is still there (on its file system: local or shared)."""
    from pyarrow.fs import FileType

    return bool(checkpoint.filesystem.get_file_info(checkpoint.path).type == FileType.Directory)


class StartsOver:
    """Mixed into Tune's trainable for :func:`train_trial`: a trial whose checkpoint is gone starts over.

    A resumed experiment's saved state names each unfinished trial's last checkpoint, and
    ``Tuner.restore`` hands it to the trial's actor unchecked. When the trial's folder was
    deleted (``--resume`` then says it "runs again from scratch"), Ray's ``Trainable.restore``
    raises on the missing folder at every retry and the trial ends in error. Skipping the
    restore leaves the trial nothing to load: ``tune.get_checkpoint()`` is None and it trains
    from its first step. Ray builds the trainable class from the function's ``__mixins__``.
    """

    def restore(self, checkpoint_path: Any) -> Any:
        checkpoint = getattr(checkpoint_path, "checkpoint", None)  # a _TrainingResult from Tune
        if checkpoint is not None and not checkpoint_exists(checkpoint):
            return None
        return super().restore(checkpoint_path)  # type: ignore[misc]


def train_trial(config: dict[str, Any], data: DatasetDict | None = None) -> None:
    """The Ray Tune trainable: one fine-tuning run, reported to Tune after every epoch.

    Args:
        config: the trial's config (``tuning.trial_config``; read by :meth:`TrialSettings.from_dict`).
        data: the loaded splits (shared through Ray's object store by the method runner);
            loaded from ``config['data']`` when absent.
    """
    from ray import tune

    release_freed_memory()  # of the trials this reused worker ran before
    settings = TrialSettings.from_dict(config)
    if data is None:
        from tuning.data import load_splits

        data = load_splits(settings.data)
    context = tune.get_context()
    if settings.tensorboard_dir:
        settings.tensorboard_dir = os.path.join(settings.tensorboard_dir, context.get_trial_name())

    # With a cost objective the driver measured every cost level (tuning.cost): each result
    # carries this trial's, so Optuna sees both objectives and the report draws the front.
    table = config.get(SERVING_COST) or {}
    cost = table.get(level_key(full_depth(config.get("model") or {})), {}) if table else {}

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report({**metrics, **cost}, checkpoint=checkpoint)

    with scratch_dir() as output_dir:
        checkpoint = tune.get_checkpoint()  # None after StartsOver skipped a missing one
        if checkpoint is None:
            run_training(settings, data, output_dir, report)
        else:
            with checkpoint.as_directory() as resume_from:
                run_training(settings, data, output_dir, report, resume_from=resume_from)


train_trial.__mixins__ = (StartsOver,)  # type: ignore[attr-defined]
