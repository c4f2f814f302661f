"""Planted bugs for 01_four_steps_torch: the classic mistakes of an autograd.Function for batch norm."""

from . import plant

FUNCTION = "batch_norm_function"
VAR = "var = x.var(dim=reduce_dims, unbiased=False, keepdim=True)"
INV_STD = "inv_std = torch.rsqrt(var + eps)"
X_HAT = "x_hat = (x - mean) * inv_std"
Y = "y = channel_shape(gamma, x) * x_hat + channel_shape(beta, x)"
FORWARD_DIMS = "reduce_dims = [0] + list(range(2, x.dim()))"
BACKWARD_DIMS = "reduce_dims = [0] + list(range(2, dy.dim()))"
MEAN_TERM = "            - dx_hat.sum(dim=reduce_dims, keepdim=True)\n"
VAR_TERM = "            - x_hat * (dx_hat * x_hat).sum(dim=reduce_dims, keepdim=True)\n"
DX = (
    "dx = inv_std / m * (\n"
    "            m * dx_hat\n" + MEAN_TERM + VAR_TERM + "        )"
)
RETURN = "return dx, dgamma, dbeta, None"

MUTANTS = [
    plant("torch_var_unbiased_default", "torch.var's default",
          (FUNCTION, VAR, "var = x.var(dim=reduce_dims, keepdim=True)")),
    plant("eps_outside_root", "eps is added outside the square root",
          (FUNCTION, INV_STD, "inv_std = 1.0 / (torch.sqrt(var) + eps)")),
    plant("eps_argument_ignored", "ignored the eps argument",
          (FUNCTION, INV_STD, "inv_std = torch.rsqrt(var + 1e-5)")),
    plant("image_statistics_over_dim_0", "over dim 0 only",
          (FUNCTION, FORWARD_DIMS, "reduce_dims = [0]"),
          (FUNCTION, BACKWARD_DIMS, "reduce_dims = [0]")),
    plant("input_modified_in_place", "was modified by your function",
          (FUNCTION, X_HAT, "x_hat = x.sub_(mean).mul_(inv_std)")),
    plant("float32_output", "expected dtype torch.float64",
          (FUNCTION, Y, "y = torch.empty(x.shape, device=x.device)\n        y.copy_(" + Y[4:] + ")")),
    plant("float32_computation", "computed in float32",
          (FUNCTION, FORWARD_DIMS, "x = x.float()\n        " + FORWARD_DIMS)),
    plant("dx_with_constant_statistics", "treats the batch statistics as constants",
          (FUNCTION, DX, "dx = dx_hat * inv_std")),
    plant("dx_without_mean_term", "dx lacks the mean term", (FUNCTION, MEAN_TERM, "")),
    plant("dx_without_variance_term", "dx lacks the variance term", (FUNCTION, VAR_TERM, "")),
    plant("gamma_beta_gradients_missing", "gradients of gamma and beta are missing",
          (FUNCTION, RETURN, "return dx, None, None, None")),
    plant("dgamma_without_x_hat", "dgamma without x_hat",
          (FUNCTION, "dgamma = (dy * x_hat).sum(dim=reduce_dims)", "dgamma = dy.sum(dim=reduce_dims)")),
    plant("dbeta_averaged", "dbeta is averaged",
          (FUNCTION, "dbeta = dy.sum(dim=reduce_dims)", "dbeta = dy.mean(dim=reduce_dims)")),
    plant("batch_norm_bypasses_function", "does not go through BatchNormFunction.apply",
          ("batch_norm", "return BatchNormFunction.apply(x, gamma, beta, eps)",
           "return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)")),
    plant("quiz_wrong_answer", "is not the right answer",
          ("quiz_answers", 'answer_q3 = "d"', 'answer_q3 = "a"')),
]

# A cheat: replacing every check passes the visible tests, but the hidden
# tests re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_the_checks", "NotImplementedError",
          ("batch_norm", "    return BatchNormFunction.apply(x, gamma, beta, eps)\n    ### END SOLUTION",
           "    raise NotImplementedError()\n    ### END SOLUTION\n\n\n"
           "for _name in dir(checks):\n"
           "    if _name.startswith(\"check_\"):\n"
           "        setattr(checks, _name, lambda *args, **kwargs: None)")),
]
