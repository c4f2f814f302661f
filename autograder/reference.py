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


def folded_weights(W, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """(W2, b2) of an eval-mode BN folded into the Linear (W of 2 dims) or Conv2d (4 dims) before it, by
    torch.nn.utils.fusion in float64; gamma and beta None mean affine=False."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

    channels = W.shape[0]
    gamma = np.ones(channels) if gamma is None else gamma
    beta = np.zeros(channels) if beta is None else beta
    fuse = fuse_conv_bn_weights if np.ndim(W) == 4 else fuse_linear_bn_weights
    W2, b2 = fuse(_tensor(W), None if b is None else _tensor(b), _tensor(running_mean), _tensor(running_var), eps,
                  _tensor(gamma), _tensor(beta))
    return W2.detach().numpy(), b2.detach().numpy()


def mlp_eval(x, layers, placement):
    """The eval-mode output of an MLP built from torch.nn modules: Linear, then BN and ReLU in ``placement``'s order."""
    modules = []
    for W, b, bn in layers:
        linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(_tensor(W))
            linear.bias.copy_(_tensor(b))
        modules.append(linear)
        if bn is None:
            continue
        norm = torch.nn.BatchNorm1d(W.shape[0], eps=bn["eps"], dtype=torch.float64)
        with torch.no_grad():
            for name, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "running_mean"),
                              ("running_var", "running_var")):
                getattr(norm, name).copy_(_tensor(bn[key]))
        hidden = {"bn_relu": [norm, torch.nn.ReLU()], "relu_bn": [torch.nn.ReLU(), norm], "none": [torch.nn.ReLU()]}
        modules.extend(hidden[placement])
    with torch.no_grad():
        return torch.nn.Sequential(*modules).eval()(_tensor(x)).numpy()


def normalization(kind, x, size, gamma=None, beta=None, eps=1e-5, dy=None):
    """y of torch's layer, group, instance or RMS normalization in float64 (``kind`` as in
    :mod:`autograder.mistaken_variants`; ``size`` is normalized_shape or num_groups); with ``dy``,
    also {"dx", "dgamma", "dbeta"} by autograd (None where there is no parameter)."""
    x_t = _tensor(x, dy is not None)
    gamma_t, beta_t = (None if p is None else _tensor(p, dy is not None) for p in (gamma, beta))
    if kind in ("layer", "rms"):
        shape = (size,) if isinstance(size, int) else tuple(size)
        y = (F.layer_norm(x_t, shape, gamma_t, beta_t, eps) if kind == "layer"
             else F.rms_norm(x_t, shape, gamma_t, eps))
    elif kind == "group":
        y = F.group_norm(x_t, size, gamma_t, beta_t, eps)
    else:
        y = F.instance_norm(x_t, eps=eps)
    if dy is None:
        return y.detach().numpy()
    y.backward(_tensor(dy))
    grads = {"dx": x_t, "dgamma": gamma_t, "dbeta": beta_t}
    return y.detach().numpy(), {k: None if t is None else t.grad.numpy() for k, t in grads.items()}
