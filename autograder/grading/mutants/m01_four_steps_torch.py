"""Planted bugs for 01_four_steps_torch: the classic mistakes of an autograd.Function for batch norm."""

from . import plant, variant

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

MIXED_FORWARD_OLD = (
    "reduce_dims = [0] + list(range(2, x.dim()))\n"
    "        mean = x.mean(dim=reduce_dims, keepdim=True)\n"
    "        var = x.var(dim=reduce_dims, unbiased=False, keepdim=True)\n"
    "        inv_std = torch.rsqrt(var + eps)\n"
    "        x_hat = (x - mean) * inv_std\n")
MIXED_FORWARD_NEW = (
    "flat = x.reshape(-1, x.shape[1])\n"
    "        inv_std = torch.rsqrt(flat.var(dim=0, unbiased=False) + eps)\n"
    "        x_hat = ((flat - flat.mean(dim=0)) * inv_std).reshape(x.shape)\n")
MIXED_BACKWARD_OLD = "        dx = inv_std / m * (\n" + "            m * dx_hat\n" + MEAN_TERM + VAR_TERM + "        )"
MIXED_BACKWARD_NEW = (
    "        flat_grad, flat_hat = dx_hat.reshape(-1, dy.shape[1]), x_hat.reshape(-1, dy.shape[1])\n"
    "        dx = (inv_std / m * (m * flat_grad - flat_grad.sum(dim=0)\n"
    "                             - flat_hat * (flat_grad * flat_hat).sum(dim=0))).reshape(dy.shape)")

MUTANTS = [
    plant("torch_var_unbiased_default", "unbiased_variance",
          (FUNCTION, VAR, "var = x.var(dim=reduce_dims, keepdim=True)")),
    plant("eps_outside_root", "eps_outside_root",
          (FUNCTION, INV_STD, "inv_std = 1.0 / (torch.sqrt(var) + eps)")),
    plant("eps_argument_ignored", "eps_ignored",
          (FUNCTION, INV_STD, "inv_std = torch.rsqrt(var + 1e-5)")),
    plant("image_statistics_over_dim_0", "statistics_over_axis_0",
          (FUNCTION, FORWARD_DIMS, "reduce_dims = [0]"),
          (FUNCTION, BACKWARD_DIMS, "reduce_dims = [0]")),
    plant("input_modified_in_place", "input_modified_in_place",
          (FUNCTION, X_HAT, "x_hat = x.sub_(mean).mul_(inv_std)")),
    plant("float32_output", "expected dtype torch.float64",
          (FUNCTION, Y, "y = torch.empty(x.shape, device=x.device)\n        y.copy_(" + Y[4:] + ")")),
    plant("float32_computation", "computed_in_float32",
          (FUNCTION, FORWARD_DIMS, "x = x.float()\n        " + FORWARD_DIMS)),
    plant("dx_with_constant_statistics", "dx_with_constant_statistics",
          (FUNCTION, DX, "dx = dx_hat * inv_std")),
    plant("dx_without_mean_term", "dx_without_mean_term", (FUNCTION, MEAN_TERM, "")),
    plant("dx_without_variance_term", "dx_without_variance_term", (FUNCTION, VAR_TERM, "")),
    plant("gamma_beta_gradients_missing", "gamma_beta_gradients_missing",
          (FUNCTION, RETURN, "return dx, None, None, None")),
    plant("dgamma_without_x_hat", "dgamma_without_x_hat",
          (FUNCTION, "dgamma = (dy * x_hat).sum(dim=reduce_dims)", "dgamma = dy.sum(dim=reduce_dims)"),
          loses=("test_backward_params",), keeps=("test_backward_dx",)),
    plant("eps_subtracted", "eps_subtracted", (FUNCTION, INV_STD, "inv_std = torch.rsqrt(var - eps)")),
    # Right for (N, C), wrong for images: the structure point does not depend on images working.
    plant("gamma_broadcast_for_2d_only", "broadcast_along_last_axis",
          (FUNCTION, Y, "y = gamma.reshape(1, -1) * x_hat + beta.reshape(1, -1)"),
          loses=("test_forward",), keeps=("test_structure",)),
    # Forward and backward share one mistake: consistent with each other, so plain gradcheck passes them.
    plant("channels_mixed_in_forward_and_backward", "backward_matches_a_wrong_forward",
          (FUNCTION, MIXED_FORWARD_OLD, MIXED_FORWARD_NEW), (FUNCTION, MIXED_BACKWARD_OLD, MIXED_BACKWARD_NEW),
          loses=("test_gradcheck", "test_forward")),
    plant("dbeta_averaged", "dbeta_averaged",
          (FUNCTION, "dbeta = dy.sum(dim=reduce_dims)", "dbeta = dy.mean(dim=reduce_dims)")),
    plant("batch_norm_bypasses_function", "function_bypassed",
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

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # A torch UserWarning (copy-constructing a tensor) in a value that is never used: warnings never score.
    variant("user_warning_in_unused_computation", (FUNCTION, X_HAT, X_HAT + "\n        unused = x.new_tensor(x)")),
    variant("mean_as_sum_times_reciprocal",
            (FUNCTION, "mean = x.mean(dim=reduce_dims, keepdim=True)",
             "mean = x.sum(dim=reduce_dims, keepdim=True) * (1.0 / (x.numel() // x.shape[1]))")),
]
