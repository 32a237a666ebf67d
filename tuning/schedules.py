"""Learning-rate schedules for the Hugging Face Trainer, by name.

``linear``, ``cosine`` and ``constant_with_warmup`` come from ``transformers.get_scheduler``.
``step`` (warm up, then multiply the learning rate by ``step_gamma`` every ``step_epochs``
epochs) is the schedule the original project tuned and transformers lacks; it is built here the
way transformers builds its own: a ``LambdaLR`` whose multiplier is a picklable ``partial``.
Every schedule counts optimizer steps (not epochs) and multiplies the optimizer's base LR.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from numbers import Integral, Real

import transformers
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

ScheduleFactory = Callable[..., LambdaLR]


def step_multiplier(step: int, *, num_warmup_steps: int, steps_per_period: int, step_gamma: float) -> float:
    """Return the step schedule's LR multiplier at one optimizer step.

    1. Warmup: rises linearly from 0 at step 0 to 1 at ``num_warmup_steps`` (as transformers'
       warmups do).
    2. Then: ``step_gamma ** floor((step - num_warmup_steps) / steps_per_period)``.

    Args:
        step: Optimizer steps taken so far (>= 0).
        num_warmup_steps: Length of the linear warmup, in optimizer steps.
        steps_per_period: Optimizer steps between two decays (``step_epochs * steps_per_epoch``).
        step_gamma: Factor applied at every decay, in ``(0, 1]``.

    Returns:
        The multiplier of the base learning rate, in ``[0, 1]``.
    """
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    return step_gamma ** ((step - num_warmup_steps) // steps_per_period)


def _step(
    optimizer: Optimizer,
    *,
    num_warmup_steps: int,
    num_training_steps: int,
    steps_per_epoch: int,
    step_epochs: int,
    step_gamma: float,
) -> LambdaLR:
    """Build the step schedule; it keeps decaying past ``num_training_steps``, which it ignores."""
    multiplier = partial(
        step_multiplier,
        num_warmup_steps=num_warmup_steps,
        steps_per_period=step_epochs * steps_per_epoch,
        step_gamma=step_gamma,
    )
    return LambdaLR(optimizer, multiplier)


def _from_transformers(name: str) -> ScheduleFactory:
    """Make a factory of transformers' schedule ``name`` that ignores the step-only arguments."""

    def factory(
        optimizer: Optimizer,
        *,
        num_warmup_steps: int,
        num_training_steps: int,
        steps_per_epoch: int,
        step_epochs: int,
        step_gamma: float,
    ) -> LambdaLR:
        return transformers.get_scheduler(
            name,
            optimizer,
            num_warmup_steps=num_warmup_steps,
            num_training_steps=num_training_steps,
        )

    factory.__name__ = factory.__qualname__ = f"_{name}"
    factory.__doc__ = f"Build transformers' ``{name}`` schedule."
    return factory


SCHEDULES: dict[str, ScheduleFactory] = {
    "linear": _from_transformers("linear"),
    "cosine": _from_transformers("cosine"),
    "constant_with_warmup": _from_transformers("constant_with_warmup"),
    "step": _step,
}
"""Schedule name -> factory ``(optimizer, *, num_warmup_steps, num_training_steps,
steps_per_epoch, step_epochs, step_gamma) -> LambdaLR``."""


def _is_int(value: object) -> bool:
    """True for an integer (Python or numpy) that is not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def make_schedule(
    name: str,
    optimizer: Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    steps_per_epoch: int,
    step_epochs: int = 1,
    step_gamma: float = 0.5,
) -> LambdaLR:
    """Build a learning-rate schedule by name.

    Every argument is checked for every schedule (a bad value is a bad config even when this
    schedule ignores it), and all problems are reported in one error.

    Args:
        name: A key of :data:`SCHEDULES` (``linear``, ``cosine``, ``constant_with_warmup``,
            ``step``).
        optimizer: The optimizer whose learning rates the schedule multiplies.
        num_warmup_steps: Optimizer steps of linear warmup from 0 to the base LR (>= 0).
        num_training_steps: Total optimizer steps of the run (>= 1); linear and cosine reach 0 here.
        steps_per_epoch: Optimizer steps per epoch (>= 1), after gradient accumulation.
        step_epochs: ``step`` only: epochs between two decays (>= 1).
        step_gamma: ``step`` only: factor applied at every decay, in ``(0, 1]``.

    Returns:
        A ``LambdaLR``; call ``.step()`` after every optimizer step.

    Raises:
        ValueError: For an unknown name (listing the known ones) or out-of-range arguments
            (listing every problem).
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}. Got: {name!r}.")
    problems = []
    if not (_is_int(num_warmup_steps) and num_warmup_steps >= 0):
        problems.append(f"num_warmup_steps must be an int >= 0, but got {num_warmup_steps!r}")
    if not (_is_int(num_training_steps) and num_training_steps >= 1):
        problems.append(f"num_training_steps must be an int >= 1, but got {num_training_steps!r}")
    if not (_is_int(steps_per_epoch) and steps_per_epoch >= 1):
        problems.append(f"steps_per_epoch must be an int >= 1, but got {steps_per_epoch!r}")
    if not (_is_int(step_epochs) and step_epochs >= 1):
        problems.append(f"step_epochs must be an int >= 1, but got {step_epochs!r}")
    if not (isinstance(step_gamma, Real) and not isinstance(step_gamma, bool) and 0.0 < step_gamma <= 1.0):
        problems.append(f"step_gamma must be a number in (0, 1], but got {step_gamma!r}")
    if problems:
        raise ValueError(f"invalid arguments for schedule {name!r}: " + "; ".join(problems) + ".")
    return SCHEDULES[name](
        optimizer,
        num_warmup_steps=int(num_warmup_steps),
        num_training_steps=int(num_training_steps),
        steps_per_epoch=int(steps_per_epoch),
        step_epochs=int(step_epochs),
        step_gamma=float(step_gamma),
    )
