"""The float32 tolerance has room on both sides: correct forms pass with a margin, the classic mistakes fail by one.

Correct float32 batch norm written in the algebraically equivalent forms
students use (two passes, ``(1/m) * sum``, ``np.var``, a one-pass
``E[x^2] - E[x]^2``, torch's own float32 kernel) must stay well inside the
tolerance on the float32 cases; every classic mistake that float32 inputs can
expose must land well outside it (on at least one case).
"""

import numpy as np
import pytest
import torch

from autograder import cases, mistaken, reference
from autograder.cases import channel_axes, channel_shape
from autograder.compare import TOLERANCE, max_relative_error

FLOAT32 = np.dtype(np.float32)
TOLERANCE_32 = TOLERANCE[FLOAT32]
SHAPES = [s for s in cases.VISIBLE_SHAPES + ((5, 3, 2, 3, 4), (31, 17)) if cases.batch_size(s) >= cases.MIN_FLOAT32_BATCH]
SEEDS = range(12)
EPSILONS = (1e-5, 1e-2)
# Mistakes that change nothing for float32 inputs without a constant channel (eps placement shows only at
# variance 0): the float64 cases catch them.
SHOWN_IN_FLOAT64_ONLY = {"no_eps", "eps_subtracted", "computed_in_float32"}


def _float32_forms(x, gamma, beta, dy, eps):
    """(y, dx, dgamma, dbeta) of correct float32 implementations written in different forms."""
    axes, m = channel_axes(x.ndim), x.size // x.shape[1]

    def finish(mean, var):
        inv_std = 1 / np.sqrt(var + np.float32(eps))
        x_hat = (x - mean) * inv_std
        g = channel_shape(gamma, x)
        dx_hat = dy * g
        dx = inv_std / m * (m * dx_hat - dx_hat.sum(axis=axes, keepdims=True)
                            - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True))
        return g * x_hat + channel_shape(beta, x), dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)

    mean = x.mean(axis=axes, keepdims=True)
    reciprocal_mean = (1 / m) * x.sum(axis=axes, keepdims=True)
    forms = {
        "two passes": finish(mean, ((x - mean) ** 2).mean(axis=axes, keepdims=True)),
        "(1/m) * sum": finish(reciprocal_mean, (1 / m) * ((x - reciprocal_mean) ** 2).sum(axis=axes, keepdims=True)),
        "np.var": finish(mean, x.var(axis=axes, keepdims=True)),
        "one pass E[x^2] - E[x]^2": finish(mean, (x * x).mean(axis=axes, keepdims=True) - mean * mean),
    }
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    y = torch.nn.functional.batch_norm(tensors[0], None, None, tensors[1], tensors[2], training=True, eps=eps)
    y.backward(torch.tensor(dy))
    forms["torch's float32 kernel"] = (y.detach().numpy(),) + tuple(t.grad.numpy() for t in tensors)
    return forms


def _cases():
    for seed in SEEDS:
        for number, shape in enumerate(SHAPES):
            x = cases.activations(shape, np.float32, 13 * seed + number)
            gamma, beta = cases.affine_parameters(shape[1], np.float32, seed)
            dy = cases.upstream_gradient(shape, np.float32, seed)
            for eps in EPSILONS:
                expected = (reference.batch_norm_training(x, gamma, beta, eps),) + \
                    reference.batch_norm_gradients(x, gamma, beta, dy, eps)
                yield x, gamma, beta, dy, eps, dict(zip(("y", "dx", "dgamma", "dbeta"), expected))


@pytest.fixture(scope="module")
def errors():
    """Worst error of every correct form, and largest error of every mistake, over all float32 cases."""
    correct, wrong = {}, {}
    for x, gamma, beta, dy, eps, expected in _cases():
        for form, results in _float32_forms(x, gamma, beta, dy, eps).items():
            for quantity, got in zip(("y", "dx", "dgamma", "dbeta"), results):
                error = max_relative_error(got, expected[quantity], FLOAT32)
                correct[form, quantity] = max(correct.get((form, quantity), 0.0), error)
        mistakes = dict(mistaken.backward(x, gamma, dy, eps), y=mistaken.forward(x, gamma, beta, eps))
        for quantity, by_key in mistakes.items():
            for key, compute in by_key.items():
                error = max_relative_error(compute(), expected[quantity], FLOAT32)
                wrong[quantity, key] = max(wrong.get((quantity, key), 0.0), error)
    return correct, wrong


def test_correct_float32_forms_pass_with_a_margin(errors):
    correct, _ = errors
    worst = max(correct.values())
    print(f"correct float32 forms: worst error {worst:.2e} (tolerance {TOLERANCE_32:g})")
    assert worst < TOLERANCE_32 / 5, {k: f"{v:.1e}" for k, v in correct.items() if v >= TOLERANCE_32 / 5}


def test_float32_mistakes_fail_by_a_margin(errors):
    _, wrong = errors
    exposed = {k: v for k, v in wrong.items() if k[1] not in SHOWN_IN_FLOAT64_ONLY}
    smallest = min(exposed.values())
    print(f"classic mistakes in float32: smallest largest-error {smallest:.2e} (tolerance {TOLERANCE_32:g})")
    assert smallest > 10 * TOLERANCE_32, {k: f"{v:.1e}" for k, v in exposed.items() if v <= 10 * TOLERANCE_32}
