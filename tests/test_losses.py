"""Tests of tuning.losses: hand-computed values, degenerate batches, gradients, the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tuning.losses import EMBEDDING_LOSSES, LOSSES, batch_pearson, make_loss
from tuning.metrics import pearson

# Losses of predicted scores; CoSENT and AnglE take the two embeddings (tested below).
SCORE_LOSSES = [name for name in LOSSES if name not in EMBEDDING_LOSSES]


def t(*values: float) -> torch.Tensor:
    """A float64 tensor of shape [B] that requires grad."""
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


PRED = (1.0, 2.0, 3.0)
TARGET = (1.0, 1.0, 1.0)


def test_mse_hand_computed() -> None:
    assert make_loss("mse")(t(*PRED), t(*TARGET)).item() == pytest.approx(5 / 3)


def test_l1_hand_computed() -> None:
    assert make_loss("l1")(t(*PRED), t(*TARGET)).item() == pytest.approx(1.0)


def test_smooth_l1_default_beta_hand_computed() -> None:
    # Errors 0, 1, 2 with beta 1: 0, 1 - 0.5, 2 - 0.5.
    assert make_loss("smooth_l1")(t(*PRED), t(*TARGET)).item() == pytest.approx(2 / 3)


def test_smooth_l1_beta_sets_the_quadratic_zone() -> None:
    # Errors 0, 1, 2 with beta 2: 0, 0.5 * 1 / 2, 2 - 1.
    loss = make_loss("smooth_l1", beta=2.0)(t(*PRED), t(*TARGET))
    assert loss.item() == pytest.approx(1.25 / 3)


def test_bce_hand_computed() -> None:
    # -log sigmoid(2) - log(1 - sigmoid(-1)) = softplus(-2) + softplus(-1), averaged.
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    loss = make_loss("bce")(t(2.0, -1.0), torch.tensor([1, 0]))
    assert loss.item() == pytest.approx(expected)


def test_bce_takes_bool_targets() -> None:
    loss = make_loss("bce")(torch.zeros(2), torch.tensor([True, False]))
    assert loss.item() == pytest.approx(math.log(2.0))


def test_batch_pearson_hand_computed() -> None:
    # Centered: [-1, 0, 1] and [-1, 1, 0]; r = 1 / sqrt(2 * 2).
    assert batch_pearson(t(1.0, 2.0, 3.0), t(1.0, 3.0, 2.0)).item() == pytest.approx(0.5)


def test_batch_pearson_matches_the_metric() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(32, generator=generator, dtype=torch.float64) * 5
    predictions = targets + torch.randn(32, generator=generator, dtype=torch.float64)
    expected = pearson(predictions.numpy(), targets.numpy())
    assert batch_pearson(predictions, targets).item() == pytest.approx(expected, abs=1e-7)


def test_corr_mae_hand_computed() -> None:
    # rho = 0.5, MAE = (0 + 1 + 1) / 3: 0.9 * (1 - 0.5) + 0.1 * 2 / 3.
    loss = make_loss("corr_mae")(t(1.0, 2.0, 3.0), t(1.0, 3.0, 2.0))
    assert loss.item() == pytest.approx(0.9 * 0.5 + 0.1 * 2 / 3)


def test_corr_mae_alpha_zero_is_the_correlation_term() -> None:
    loss = make_loss("corr_mae", alpha=0.0)
    assert loss(t(1.0, 2.0, 3.0), t(1.0, 3.0, 2.0)).item() == pytest.approx(0.5)
    assert loss(t(1.0, 2.0, 3.0), t(3.0, 5.0, 7.0)).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(t(1.0, 2.0, 3.0), t(7.0, 5.0, 3.0)).item() == pytest.approx(2.0, abs=1e-7)


def test_corr_mae_alpha_one_is_mae() -> None:
    loss = make_loss("corr_mae", alpha=1.0)(t(1.0, 2.0, 3.0), t(1.0, 3.0, 2.0))
    assert loss.item() == pytest.approx(2 / 3)


DEGENERATE_BATCHES = {
    "size one": ((2.0,), (3.0,)),
    "constant targets": ((1.0, 2.0, 4.0), (3.0, 3.0, 3.0)),
    "constant predictions": ((2.5, 2.5, 2.5), (1.0, 3.0, 5.0)),
    "both constant": ((2.5, 2.5), (4.0, 4.0)),
    "near-constant predictions": ((2.5, 2.5 + 1e-6, 2.5 - 1e-6), (1.0, 3.0, 5.0)),
}


@pytest.mark.parametrize(
    ("predictions", "targets"), DEGENERATE_BATCHES.values(), ids=DEGENERATE_BATCHES.keys()
)
def test_corr_mae_on_degenerate_batch_uses_rho_zero_and_trains_only_mae(
    predictions: tuple[float, ...], targets: tuple[float, ...]
) -> None:
    pred, target = t(*predictions), t(*targets)
    loss = make_loss("corr_mae", alpha=0.25)(pred, target)
    loss.backward()
    mae = np.mean(np.abs(np.subtract(predictions, targets)))
    assert loss.item() == pytest.approx(0.75 * (1.0 - 0.0) + 0.25 * mae)
    mae_grad = 0.25 * np.sign(np.subtract(predictions, targets)) / len(predictions)
    np.testing.assert_allclose(pred.grad.numpy(), mae_grad)
    assert torch.isfinite(target.grad).all()


@pytest.mark.parametrize(
    ("predictions", "targets"), DEGENERATE_BATCHES.values(), ids=DEGENERATE_BATCHES.keys()
)
def test_batch_pearson_on_degenerate_batch_is_zero_with_zero_gradient(
    predictions: tuple[float, ...], targets: tuple[float, ...]
) -> None:
    pred, target = t(*predictions), t(*targets)
    rho = batch_pearson(pred, target)
    rho.backward()
    assert rho.item() == 0.0
    assert torch.equal(pred.grad, torch.zeros_like(pred))
    assert torch.equal(target.grad, torch.zeros_like(target))


def test_corr_mae_just_above_the_variance_floor_has_finite_gradient() -> None:
    pred = t(2.5, 2.5 + 2e-4, 2.5 - 2e-4)  # variance ~2.7e-8, just above eps = 1e-8
    target = t(1.0, 3.0, 5.0)
    loss = make_loss("corr_mae")(pred, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pred.grad).all()


def test_corr_mae_gradcheck() -> None:
    # No prediction equals its target, so MAE is differentiable at this point.
    pred = t(0.3, -1.2, 2.0, 0.7, 1.5)
    target = t(0.0, -0.5, 1.4, 1.1, 2.6)
    loss = make_loss("corr_mae", alpha=0.3)
    assert torch.autograd.gradcheck(loss, (pred, target))


@pytest.mark.parametrize("name", SCORE_LOSSES)
def test_every_loss_returns_a_finite_scalar_with_finite_gradient(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(8, generator=generator, requires_grad=True)
    target = (torch.rand(8, generator=generator) > 0.5).float()
    loss = make_loss(name)(pred, target)
    loss.backward()
    assert loss.shape == ()
    assert torch.isfinite(loss)
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("name", SCORE_LOSSES)
def test_every_loss_refuses_a_one_output_head_shape(name: str) -> None:
    with pytest.raises(ValueError, match=r"predictions.shape=\(4, 1\), targets.shape=\(4,\)"):
        make_loss(name)(torch.zeros(4, 1), torch.zeros(4))


def test_unknown_loss_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as error:
        make_loss("huber")
    assert str(error.value) == (
        "loss must be one of ['angle', 'bce', 'corr_mae', 'cosent', 'l1', 'mse', 'smooth_l1']. Got: 'huber'."
    )


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_corr_mae_refuses_alpha_outside_zero_one(alpha: object) -> None:
    with pytest.raises(ValueError, match=r"`alpha` must be a number in \[0, 1\], but got alpha="):
        make_loss("corr_mae", alpha=alpha)


def test_corr_mae_takes_numpy_alpha() -> None:
    loss = make_loss("corr_mae", alpha=np.float32(1.0))(t(1.0, 2.0, 3.0), t(1.0, 3.0, 2.0))
    assert loss.item() == pytest.approx(2 / 3)


def test_smooth_l1_refuses_negative_beta() -> None:
    with pytest.raises(ValueError, match=r"`beta` must be a finite number >= 0, but got beta=-1"):
        make_loss("smooth_l1", beta=-1.0)


def test_unknown_parameter_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"'corr_mae' does not take .*\['beta'\].*\['alpha', 'eps'\]"):
        make_loss("corr_mae", beta=1.0)
    with pytest.raises(ValueError, match=r"'mse' does not take .*\['alpha'\]; it accepts none"):
        make_loss("mse", alpha=0.1)


@pytest.mark.parametrize("name", SCORE_LOSSES)
def test_every_loss_refuses_an_empty_batch(name: str) -> None:
    with pytest.raises(ValueError, match=r"B >= 1, but got predictions.shape=\(0,\)"):
        make_loss(name)(torch.zeros(0), torch.zeros(0))


def test_corr_mae_in_half_precision_matches_float32() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16, requires_grad=True)
    loss = make_loss("corr_mae")(pred, torch.tensor([1.0, 3.0, 2.0], dtype=torch.bfloat16))
    loss.backward()
    assert loss.item() == pytest.approx(0.9 * 0.5 + 0.1 * 2 / 3, rel=1e-2)
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("name", ["cosent", "angle"])
def test_ranking_losses_are_sentence_transformers_own(name):
    from sentence_transformers.sentence_transformer.losses import AnglELoss, CoSENTLoss

    torch.manual_seed(0)
    u, v = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)
    targets = torch.tensor([0.0, 1.0, 2.5, 2.5, 4.0, 5.0])
    reference = {"cosent": CoSENTLoss, "angle": AnglELoss}[name](model=None, scale=20.0)
    loss = make_loss(name)((u, v), targets)
    assert loss.item() == pytest.approx(reference.compute_loss_from_embeddings([u, v], targets).item())
    loss.backward()
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
    # Only the targets' order counts: any increasing map of them gives the same loss.
    assert make_loss(name)((u, v), targets / 5).item() == pytest.approx(loss.item())


def test_ranking_loss_of_a_batch_without_a_ranked_pair_is_zero():
    u, v = torch.randn(3, 8), torch.randn(3, 8)
    assert make_loss("cosent")((u, v), torch.full((3,), 2.0)).item() == pytest.approx(0.0)


def test_ranking_loss_scale_is_checked():
    with pytest.raises(ValueError, match="scale"):
        make_loss("cosent", scale=0)


@pytest.mark.parametrize("name", EMBEDDING_LOSSES)
def test_ranking_losses_refuse_embeddings_and_targets_of_different_batches(name):
    with pytest.raises(ValueError, match=r"targets.shape=\(3,\)"):
        make_loss(name)((torch.zeros(4, 8), torch.zeros(4, 8)), torch.zeros(3))
