"""Planted bugs for 01_four_steps_numpy: the classic mistakes of the forward and backward pass."""

from . import plant

MEAN_AXES = "reduce_axes = (0,) + tuple(range(2, x.ndim))\n    return x.mean(axis=reduce_axes)"
VAR_AXES = "reduce_axes = (0,) + tuple(range(2, x.ndim))\n    centered"
VAR_RETURN = "return (centered ** 2).mean(axis=reduce_axes)"
NORMALIZE = "return (x - channel_shape(mean, x)) / np.sqrt(channel_shape(var, x) + eps)"
SCALE_SHIFT = "return channel_shape(gamma, x_hat) * x_hat + channel_shape(beta, x_hat)"
MEAN_TERM = "        - dx_hat.sum(axis=reduce_axes, keepdims=True)\n"
VAR_TERM = "        - x_hat * (dx_hat * x_hat).sum(axis=reduce_axes, keepdims=True)\n"

MUTANTS = [
    plant("unbiased_variance", "unbiased variance",
          ("batch_var", VAR_RETURN,
           "return (centered ** 2).sum(axis=reduce_axes) / (centered.size // centered.shape[1] - 1)")),
    plant("std_instead_of_variance", "returned the standard deviation",
          ("batch_var", VAR_RETURN, "return np.sqrt((centered ** 2).mean(axis=reduce_axes))")),
    plant("eps_outside_root", "eps is added outside the square root",
          ("normalize", NORMALIZE,
           "return (x - channel_shape(mean, x)) / (np.sqrt(channel_shape(var, x)) + eps)")),
    plant("no_eps", "no eps",
          ("normalize", NORMALIZE, "return (x - channel_shape(mean, x)) / np.sqrt(channel_shape(var, x))")),
    plant("eps_argument_ignored", "ignored the eps argument",
          ("normalize", NORMALIZE, "return (x - channel_shape(mean, x)) / np.sqrt(channel_shape(var, x) + 1e-5)")),
    plant("gamma_beta_swapped", "gamma and beta are swapped",
          ("scale_shift", SCALE_SHIFT, "return channel_shape(beta, x_hat) * x_hat + channel_shape(gamma, x_hat)")),
    plant("gamma_broadcast_on_last_axis", "(1, C, 1, 1)",
          ("scale_shift", SCALE_SHIFT, "return gamma * x_hat + beta")),
    plant("image_statistics_over_axis_0", "reduced over axis 0 only",
          ("batch_mean", MEAN_AXES, "reduce_axes = 0\n    return x.mean(axis=reduce_axes)"),
          ("batch_var", VAR_AXES, "reduce_axes = 0\n    centered")),
    plant("per_sample_statistics", "per-sample statistics",
          ("batch_mean", MEAN_AXES, "reduce_axes = tuple(range(1, x.ndim))\n    return x.mean(axis=reduce_axes)"),
          ("batch_var", VAR_AXES, "reduce_axes = tuple(range(1, x.ndim))\n    centered")),
    plant("float32_statistics", "computed in float32",
          ("batch_mean", "return x.mean(axis=reduce_axes)",
           "return x.astype(np.float32).mean(axis=reduce_axes).astype(x.dtype)")),
    plant("input_modified_in_place", "was modified by your function",
          ("normalize", NORMALIZE,
           "x -= channel_shape(mean, x)\n    return x / np.sqrt(channel_shape(var, x) + eps)")),
    plant("dx_without_mean_term", "dx lacks the mean term", ("bn_backward", MEAN_TERM, "")),
    plant("dx_without_variance_term", "dx lacks the variance term", ("bn_backward", VAR_TERM, "")),
    plant("dx_with_constant_statistics", "treats the batch statistics as constants",
          ("bn_backward", MEAN_TERM + VAR_TERM, ""),
          ("bn_backward", "m * dx_hat\n", "m * dx_hat\n    ) * 0 + dx_hat * channel_shape(inv_std, dy) * (1\n")),
    plant("dx_without_gamma", "gamma is missing from dx",
          ("bn_backward", "dx_hat = dy * channel_shape(gamma, dy)", "dx_hat = dy")),
    plant("dbeta_averaged", "dbeta is averaged",
          ("bn_backward", "dbeta = dy.sum(axis=reduce_axes)", "dbeta = dy.mean(axis=reduce_axes)")),
    plant("dgamma_without_x_hat", "dgamma without x_hat",
          ("bn_backward", "dgamma = (dy * x_hat).sum(axis=reduce_axes)", "dgamma = dy.sum(axis=reduce_axes)")),
    plant("quiz_wrong_answer", "is not the right answer",
          ("quiz_answers", 'answer_q2 = "c"', 'answer_q2 = "d"')),
]

# Cheats: replacing the checks from a solution cell passes the visible tests,
# but the hidden tests re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_a_check", "not implemented yet",
          ("batch_mean", "    return x.mean(axis=reduce_axes)\n    ### END SOLUTION",
           "    raise NotImplementedError()\n    ### END SOLUTION\n\n\n"
           "checks.check_batch_mean = lambda *args, **kwargs: None")),
    plant("cheat_replaces_the_quiz_check", "the answer must be one of",
          ("quiz_answers", 'answer_q1 = "b"', 'answer_q1 = "?"\ncheck_choice = lambda *args, **kwargs: None')),
]
