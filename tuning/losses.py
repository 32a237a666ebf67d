"""Training losses for a one-output similarity head, plus the binary loss of the multi-task head.

Every loss is a pure tensor function of ``(predictions, targets)``: two float tensors of shape
``[B]`` in the same space (raw 0-5 scores, or scores standardized with the training set's mean and
standard deviation; the trial decides) that returns a scalar tensor. A head with one output yields
``[B, 1]``; squeeze it first. Shapes are checked because ``[B, 1] - [B]`` would broadcast to
``[B, B]`` and train on the wrong quantity without any error.

Losses are built by name from :data:`LOSSES` with :func:`make_loss`, which checks the parameters
once so that a bad search-space value fails before training starts.

The field's ranking losses for bi-encoders, CoSENT and AnglE, are sentence-transformers' own
(``CoSENTLoss``, ``AnglELoss``, their ``compute_loss_from_embeddings``): they take the two
sentences' embeddings ``(u, v)`` instead of predictions (:data:`EMBEDDING_LOSSES`), and use the
targets only through their order.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import partial
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]

EPS = 1e-8
"""Variance floor (in squared target units) below which a batch's correlation is undefined."""


def _check_shapes(predictions: Tensor, targets: Tensor) -> None:
    """Raise ``ValueError`` unless both tensors have the same shape ``[B]`` with ``B >= 1``."""
    if predictions.ndim != 1 or predictions.shape != targets.shape or predictions.shape[0] == 0:
        raise ValueError(
            "predictions and targets must both have shape [B] with B >= 1, but got "
            f"predictions.shape={tuple(predictions.shape)}, targets.shape={tuple(targets.shape)}."
            " Squeeze a one-output head's [B, 1] logits with logits.squeeze(-1)."
        )


def batch_pearson(predictions: Tensor, targets: Tensor, eps: float = EPS) -> Tensor:
    """Pearson's correlation between predictions and targets over one batch, safe to train on.

    The correlation is undefined for a batch of fewer than two items, or when either side has
    (near) zero variance. Then this returns ``0.0`` with a zero gradient: an undefined correlation
    carries no training signal, and 0 is the value :func:`tuning.metrics.pearson` reports for a
    constant prediction, so a collapsed model's loss stays high rather than looking perfect.
    Both branches are built with ``torch.where`` on a safe denominator, so no NaN or inf reaches
    the value or the gradient.

    Args:
        predictions: Predicted scores, shape ``[B]``, any real scale.
        targets: Target scores, shape ``[B]``, any real scale.
        eps: Variance floor: a side whose per-item variance is ``<= eps`` counts as constant;
            also added to the denominator.

    Returns:
        A scalar tensor r in ``[-1, 1]`` (``0.0`` when undefined, see above), in float32 or
        wider (half-precision inputs are upcast).
    """
    _check_shapes(predictions, targets)
    # Half precision cannot hold eps = 1e-8 nor a small variance; compute in at least float32.
    dtype = torch.promote_types(torch.promote_types(predictions.dtype, targets.dtype), torch.float32)
    predictions, targets = predictions.to(dtype), targets.to(dtype)
    # A batch of one centers to zero variance, so the variance check below covers it too.
    centered_p = predictions - predictions.mean()
    centered_t = targets - targets.mean()
    var_p = (centered_p * centered_p).mean()
    var_t = (centered_t * centered_t).mean()
    covariance = (centered_p * centered_t).mean()
    degenerate = (var_p <= eps) | (var_t <= eps)
    # sqrt has an infinite derivative at 0; feed it 1.0 where the result is discarded anyway.
    safe_product = torch.where(degenerate, torch.ones_like(var_p), var_p * var_t)
    rho = covariance / (torch.sqrt(safe_product) + eps)
    return torch.where(degenerate, torch.zeros_like(rho), rho)


def mse_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error.

    Args:
        predictions: Predicted scores, shape ``[B]``.
        targets: Target scores, shape ``[B]``, same space (0-5 or standardized).

    Returns:
        Scalar ``mean((predictions - targets) ** 2)``.
    """
    _check_shapes(predictions, targets)
    return F.mse_loss(predictions, targets)


def l1_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """Mean absolute error.

    Args:
        predictions: Predicted scores, shape ``[B]``.
        targets: Target scores, shape ``[B]``, same space (0-5 or standardized).

    Returns:
        Scalar ``mean(|predictions - targets|)``.
    """
    _check_shapes(predictions, targets)
    return F.l1_loss(predictions, targets)


def smooth_l1_loss(predictions: Tensor, targets: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth L1 (Huber scaled by ``1 / beta``): quadratic below ``beta``, linear above.

    Args:
        predictions: Predicted scores, shape ``[B]``.
        targets: Target scores, shape ``[B]``, same space (0-5 or standardized).
        beta: Error size (in target units) where the loss turns from quadratic to linear; 0 is L1.

    Returns:
        Scalar mean of ``0.5 d**2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 beta``,
        ``d = predictions - targets``.
    """
    _check_shapes(predictions, targets)
    return F.smooth_l1_loss(predictions, targets, beta=beta)


def corr_mae_loss(predictions: Tensor, targets: Tensor, alpha: float = 0.1, eps: float = EPS) -> Tensor:
    """Correlation loss mixed with MAE: ``(1 - alpha) * (1 - rho) + alpha * MAE``.

    ``rho`` is :func:`batch_pearson` over the batch. Where it is undefined (a batch of one, or
    constant predictions or targets) ``rho = 0`` with zero gradient, so the correlation term is the
    constant ``1 - alpha`` and only the MAE term trains that step. The loss and its gradient are
    always finite.

    Args:
        predictions: Predicted scores, shape ``[B]``.
        targets: Target scores, shape ``[B]``, same space (0-5 or standardized).
        alpha: Weight of the MAE term in ``[0, 1]``; 0 is pure correlation, 1 is pure MAE.
        eps: Variance floor of :func:`batch_pearson`.

    Returns:
        A scalar tensor, ``>= 0``; the correlation term lies in ``[0, 2 (1 - alpha)]``.
    """
    rho = batch_pearson(predictions, targets, eps=eps)
    mae = F.l1_loss(predictions, targets)
    return (1.0 - alpha) * (1.0 - rho) + alpha * mae


def bce_with_logits_loss(logits: Tensor, binary_targets: Tensor) -> Tensor:
    """Binary cross-entropy on logits, for the multi-task head's "similar or not" output.

    Args:
        logits: Raw scores of the positive class (similarity >= 3.0), shape ``[B]``.
        binary_targets: 0/1 labels (bool, int or float), shape ``[B]``.

    Returns:
        Scalar mean binary cross-entropy.
    """
    _check_shapes(logits, binary_targets)
    return F.binary_cross_entropy_with_logits(logits, binary_targets.to(logits.dtype))


def _is_real(value: object) -> bool:
    """True for a finite real number (Python or numpy) that is not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _make_mse() -> LossFn:
    """Build :func:`mse_loss` (no parameters)."""
    return mse_loss


def _make_l1() -> LossFn:
    """Build :func:`l1_loss` (no parameters)."""
    return l1_loss


def _make_smooth_l1(beta: float = 1.0) -> LossFn:
    """Build :func:`smooth_l1_loss`; ``beta`` must be a finite number ``>= 0``."""
    if not (_is_real(beta) and beta >= 0):
        raise ValueError(f"smooth_l1's `beta` must be a finite number >= 0, but got beta={beta!r}.")
    return partial(smooth_l1_loss, beta=float(beta))


def _make_corr_mae(alpha: float = 0.1, eps: float = EPS) -> LossFn:
    """Build :func:`corr_mae_loss`; ``alpha`` must lie in ``[0, 1]`` and ``eps`` be ``> 0``."""
    problems = []
    if not (_is_real(alpha) and 0.0 <= alpha <= 1.0):
        problems.append(f"`alpha` must be a number in [0, 1], but got alpha={alpha!r}")
    if not (_is_real(eps) and eps > 0):
        problems.append(f"`eps` must be a finite number > 0, but got eps={eps!r}")
    if problems:
        raise ValueError("corr_mae: " + "; ".join(problems) + ".")
    return partial(corr_mae_loss, alpha=float(alpha), eps=float(eps))


def _make_bce() -> LossFn:
    """Build :func:`bce_with_logits_loss` (no parameters)."""
    return bce_with_logits_loss


class PairEmbeddingLoss:
    """A sentence-transformers pair loss on a bi-encoder's embeddings: ``loss((u, v), targets)``.

    ``u`` and ``v`` are ``[B, H]``; ``targets`` ``[B]`` (any scale: only their order counts). A
    batch without two different targets has no ranked pair and gives 0.
    """

    def __init__(self, loss_class: type, scale: float) -> None:
        self.loss = loss_class(model=None, scale=scale)  # the model is used only by forward()

    def __call__(self, embeddings: tuple[Tensor, Tensor], targets: Tensor) -> Tensor:
        u, v = embeddings
        _check_shapes(u[:, 0], targets)
        return self.loss.compute_loss_from_embeddings([u, v], targets)


def _check_scale(name: str, scale: float) -> float:
    if not (_is_real(scale) and scale > 0):
        raise ValueError(f"{name}'s `scale` must be a finite number > 0, but got scale={scale!r}.")
    return float(scale)


def _make_cosent(scale: float = 20.0) -> PairEmbeddingLoss:
    """sentence-transformers' ``CoSENTLoss`` (cosine similarity; ``scale`` 20 as there)."""
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    return PairEmbeddingLoss(CoSENTLoss, _check_scale("cosent", scale))


def _make_angle(scale: float = 20.0) -> PairEmbeddingLoss:
    """sentence-transformers' ``AnglELoss`` (CoSENT on the angle difference in complex space)."""
    from sentence_transformers.sentence_transformer.losses import AnglELoss

    return PairEmbeddingLoss(AnglELoss, _check_scale("angle", scale))


LOSSES: dict[str, Callable[..., LossFn | PairEmbeddingLoss]] = {
    "mse": _make_mse,
    "l1": _make_l1,
    "smooth_l1": _make_smooth_l1,
    "corr_mae": _make_corr_mae,
    "bce": _make_bce,
    "cosent": _make_cosent,
    "angle": _make_angle,
}
"""Loss name -> factory of the loss's keyword parameters, returning ``loss(pred, target)``
(``loss((u, v), target)`` for the names in :data:`EMBEDDING_LOSSES`)."""
EMBEDDING_LOSSES = ("cosent", "angle")
"""Losses on a bi-encoder's two embeddings rather than on its predicted scores."""
SCALE_FREE_LOSSES = ("corr_mae", *EMBEDDING_LOSSES)
"""Losses that leave the scores' scale untrained (CoSENT, AnglE) or mostly so (``corr_mae``'s
correlation term): a trial maps its raw outputs onto 0-5 by a line fitted to training labels
(``tuning.trial.STSTrainer``)."""


def make_loss(name: str, **params: object) -> LossFn | PairEmbeddingLoss:
    """Build a loss by name.

    Args:
        name: A key of :data:`LOSSES`: ``mse``, ``l1``, ``smooth_l1`` (``beta``), ``corr_mae``
            (``alpha``, ``eps``) or ``bce`` (the multi-task head's binary output).
        **params: The loss's parameters; every one omitted takes its default.

    Returns:
        A pure function ``loss(predictions, targets) -> scalar tensor`` of two ``[B]`` tensors;
        for the names in :data:`EMBEDDING_LOSSES`, ``loss((u, v), targets)`` on embeddings.

    Raises:
        ValueError: For an unknown name (listing the known ones), a parameter the loss does not
            take (listing the ones it does), or a parameter value out of range.
    """
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}. Got: {name!r}.")
    factory = LOSSES[name]
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"loss {name!r} does not take parameter(s) {unknown}; it accepts {accepted or 'none'}."
        )
    return factory(**params)
