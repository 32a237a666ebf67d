"""Tests of tuning.schedules: the step schedule's multipliers, transformers' schedules, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from tuning.schedules import SCHEDULES, make_schedule

BASE_LR = 1.0  # so every learning rate read below is the schedule's multiplier


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)


def lrs(scheduler: LambdaLR, steps: int) -> list[float]:
    """The learning rate at optimizer steps 0..steps, reading what the optimizer would use."""
    values = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        values.append(scheduler.get_last_lr()[0])
    return values


def build(name: str, **kwargs: object) -> LambdaLR:
    args = {"num_warmup_steps": 0, "num_training_steps": 10, "steps_per_epoch": 5} | kwargs
    return make_schedule(name, optimizer(), **args)


def test_step_schedule_warms_up_then_decays_every_k_epochs() -> None:
    # Warmup 4 steps; one decay period = 2 epochs x 10 steps = 20 steps after warmup.
    scheduler = build(
        "step",
        num_warmup_steps=4,
        num_training_steps=100,
        steps_per_epoch=10,
        step_epochs=2,
        step_gamma=0.5,
    )
    lr = lrs(scheduler, 70)
    assert lr[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]  # linear warmup ramp
    assert lr[23] == 1.0  # last step of the first period
    assert lr[24] == 0.5  # after 1 decay period
    assert lr[43] == 0.5
    assert lr[44] == 0.25  # after 2 decay periods
    assert lr[64] == 0.125


def test_step_schedule_without_warmup_starts_at_base_lr() -> None:
    lr = lrs(build("step", steps_per_epoch=3, step_gamma=0.1), 6)
    assert lr == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01])


def test_step_schedule_with_gamma_one_is_constant_after_warmup() -> None:
    lr = lrs(build("step", num_warmup_steps=2, steps_per_epoch=1, step_gamma=1.0), 8)
    assert lr == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_linear_schedule_goes_from_base_to_zero() -> None:
    lr = lrs(build("linear", num_warmup_steps=2, num_training_steps=10), 10)
    assert lr[0] == 0.0
    assert lr[2] == 1.0
    assert lr[6] == pytest.approx(0.5)
    assert lr[10] == 0.0


def test_cosine_schedule_goes_from_base_to_zero() -> None:
    lr = lrs(build("cosine", num_training_steps=10), 10)
    assert lr[0] == 1.0
    assert lr[5] == pytest.approx(0.5)
    assert lr[10] == pytest.approx(0.0, abs=1e-12)


def test_constant_with_warmup_stays_at_base_after_warmup() -> None:
    lr = lrs(build("constant_with_warmup", num_warmup_steps=2, num_training_steps=10), 10)
    assert lr[:3] == [0.0, 0.5, 1.0]
    assert lr[10] == 1.0


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_reaches_base_lr_after_warmup_and_pickles(name: str) -> None:
    scheduler = build(name, num_warmup_steps=3, num_training_steps=30)
    assert isinstance(scheduler, LambdaLR)
    assert lrs(scheduler, 3) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    # The Trainer saves scheduler state in every checkpoint.
    assert pickle.loads(pickle.dumps(scheduler.state_dict()))["last_epoch"] == 3


def test_numpy_integers_are_accepted() -> None:
    scheduler = build("step", steps_per_epoch=np.int64(2), step_epochs=np.int64(1))
    assert lrs(scheduler, 2) == [1.0, 1.0, 0.5]


def test_unknown_schedule_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as error:
        build("exponential")
    assert str(error.value) == (
        "schedule must be one of ['constant_with_warmup', 'cosine', 'linear', 'step']. Got: 'exponential'."
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_gamma": 0.0}, r"step_gamma must be a number in \(0, 1\], but got 0.0"),
        ({"step_gamma": 1.5}, r"step_gamma must be a number in \(0, 1\], but got 1.5"),
        ({"step_epochs": 0}, r"step_epochs must be an int >= 1, but got 0"),
        ({"step_epochs": 1.5}, r"step_epochs must be an int >= 1, but got 1.5"),
        ({"steps_per_epoch": 0}, r"steps_per_epoch must be an int >= 1, but got 0"),
        ({"num_warmup_steps": -1}, r"num_warmup_steps must be an int >= 0, but got -1"),
        ({"num_training_steps": 0}, r"num_training_steps must be an int >= 1, but got 0"),
    ],
)
def test_invalid_argument_says_what_was_given_and_what_is_accepted(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build("step", **kwargs)


def test_every_invalid_argument_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as error:
        build("cosine", steps_per_epoch=0, step_gamma=2.0)
    assert str(error.value) == (
        "invalid arguments for schedule 'cosine': steps_per_epoch must be an int >= 1, but got 0; "
        "step_gamma must be a number in (0, 1], but got 2.0."
    )
