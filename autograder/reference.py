"""Ground truth from PyTorch: torch.nn.functional.batch_norm and autograd."""

import numpy as np
import torch
import torch.nn.functional as F

from .cases import channel_axes


def _tensor(array, requires_grad=False):
    return torch.tensor(np.asarray(array, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


def batch_norm_training(x, gamma, beta, eps=1e-5):
    """y of a training-mode batch norm, computed by torch in float64."""
    y = F.batch_norm(_tensor(x), None, None, _tensor(gamma), _tensor(beta), training=True, eps=eps)
    return y.numpy()


def batch_norm_gradients(x, gamma, beta, dy, eps=1e-5):
    """(dx, dgamma, dbeta) of training-mode batch norm, by torch autograd in float64."""
    x_t, gamma_t, beta_t = _tensor(x, True), _tensor(gamma, True), _tensor(beta, True)
    y = F.batch_norm(x_t, None, None, gamma_t, beta_t, training=True, eps=eps)
    y.backward(_tensor(dy))
    return x_t.grad.numpy(), gamma_t.grad.numpy(), beta_t.grad.numpy()


def batch_statistics(x):
    """Per-channel mean and biased variance, over every axis but 1, in float64."""
    x_t = _tensor(x)
    axes = list(channel_axes(x_t.dim()))
    return x_t.mean(dim=axes).numpy(), x_t.var(dim=axes, unbiased=False).numpy()
