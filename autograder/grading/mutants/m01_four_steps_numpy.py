"""Planted bugs for 01_four_steps_numpy: the classic mistakes of the forward and backward pass."""

from . import plant, variant

MEAN_AXES = "reduce_axes = (0,) + tuple(range(2, x.ndim))\n    return x.mean(axis=reduce_axes)"
VAR_AXES = "reduce_axes = (0,) + tuple(range(2, x.ndim))\n    centered"
VAR_RETURN = "return (centered ** 2).mean(axis=reduce_axes)"
NORMALIZE = "return (x - channel_shape(mean, x)) / np.sqrt(channel_shape(var, x) + eps)"
SCALE_SHIFT = "return channel_shape(gamma, x_hat) * x_hat + channel_shape(beta, x_hat)"
MEAN_TERM = "        - dx_hat.sum(axis=reduce_axes, keepdims=True)\n"
VAR_TERM = "        - x_hat * (dx_hat * x_hat).sum(axis=reduce_axes, keepdims=True)\n"

MUTANTS = [
    plant("unbiased_variance", "unbiased_variance",
          ("batch_var", VAR_RETURN,
           "return (centered ** 2).sum(axis=reduce_axes) / (centered.size // centered.shape[1] - 1)")),
    plant("std_instead_of_variance", "standard_deviation_returned",
          ("batch_var", VAR_RETURN, "return np.sqrt((centered ** 2).mean(axis=reduce_axes))")),
    plant("eps_outside_root", "eps_outside_root",
          ("normalize", NORMALIZE,
           "return (x - channel_shape(mean, x)) / (np.sqrt(channel_shape(var, x)) + eps)")),
    plant("no_eps", "no_eps",
          ("normalize", NORMALIZE, "return (x - channel_shape(mean, x)) / np.sqrt(channel_shape(var, x))")),
    plant("eps_argument_ignored", "eps_ignored",
          ("normalize", NORMALIZE, "return (x - channel_shape(mean, x)) / np.sqrt(channel_shape(var, x) + 1e-5)")),
    plant("gamma_beta_swapped", "gamma_beta_swapped",
          ("scale_shift", SCALE_SHIFT, "return channel_shape(beta, x_hat) * x_hat + channel_shape(gamma, x_hat)")),
    plant("gamma_broadcast_on_last_axis", "broadcast_along_last_axis",
          ("scale_shift", SCALE_SHIFT, "return gamma * x_hat + beta")),
    plant("image_statistics_over_axis_0", "statistics_over_axis_0",
          ("batch_mean", MEAN_AXES, "reduce_axes = 0\n    return x.mean(axis=reduce_axes)"),
          ("batch_var", VAR_AXES, "reduce_axes = 0\n    centered")),
    plant("per_sample_statistics", "per_sample_statistics",
          ("batch_mean", MEAN_AXES, "reduce_axes = tuple(range(1, x.ndim))\n    return x.mean(axis=reduce_axes)"),
          ("batch_var", VAR_AXES, "reduce_axes = tuple(range(1, x.ndim))\n    centered")),
    plant("float32_statistics", "computed_in_float32",
          ("batch_mean", "return x.mean(axis=reduce_axes)",
           "return x.astype(np.float32).mean(axis=reduce_axes).astype(x.dtype)")),
    plant("input_modified_in_place", "input_modified_in_place",
          ("normalize", NORMALIZE,
           "x -= channel_shape(mean, x)\n    return x / np.sqrt(channel_shape(var, x) + eps)")),
    plant("dx_without_mean_term", "dx_without_mean_term", ("bn_backward", MEAN_TERM, "")),
    plant("dx_without_variance_term", "dx_without_variance_term", ("bn_backward", VAR_TERM, "")),
    plant("dx_with_constant_statistics", "dx_with_constant_statistics",
          ("bn_backward", MEAN_TERM + VAR_TERM, ""),
          ("bn_backward", "m * dx_hat\n", "m * dx_hat\n    ) * 0 + dx_hat * channel_shape(inv_std, dy) * (1\n")),
    plant("dx_without_gamma", "dx_without_gamma",
          ("bn_backward", "dx_hat = dy * channel_shape(gamma, dy)", "dx_hat = dy")),
    # A wrong dgamma or dbeta costs their own part only: dx keeps its points.
    plant("dbeta_averaged", "dbeta_averaged",
          ("bn_backward", "dbeta = dy.sum(axis=reduce_axes)", "dbeta = dy.mean(axis=reduce_axes)"),
          loses=("test_bn_backward_params",), keeps=("test_bn_backward_dx",)),
    plant("dgamma_without_x_hat", "dgamma_without_x_hat",
          ("bn_backward", "dgamma = (dy * x_hat).sum(axis=reduce_axes)", "dgamma = dy.sum(axis=reduce_axes)"),
          loses=("test_bn_backward_params",), keeps=("test_bn_backward_dx",)),
    plant("channels_mixed_by_reshape", "channels_mixed_by_reshape",
          ("batch_mean", MEAN_AXES, "return x.reshape(-1, x.shape[1]).mean(axis=0)")),
    plant("eps_subtracted", "eps_subtracted",
          ("normalize", NORMALIZE, "return (x - channel_shape(mean, x)) / np.sqrt(channel_shape(var, x) - eps)")),
    plant("dx_is_dy_over_std", "dx_is_dy_over_std",
          ("bn_backward", "dx = channel_shape(inv_std, dy) / m * (",
           "dx = dy * channel_shape(inv_std, dy)\n    unused = channel_shape(inv_std, dy) / m * (")),
    plant("dx_with_m_equal_to_n", "dx_with_m_equal_to_n",
          ("bn_backward", "m = dy.size // dy.shape[1]", "m = dy.shape[0]"), loses=("test_bn_backward_dx",)),
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

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # NumPy warns (divide by zero) on the constant channel in a value that is never used: warnings never score.
    variant("warning_in_unused_computation",
            ("normalize", NORMALIZE, "spread = 1.0 / np.sqrt(channel_shape(var, x))  # inf on a constant channel\n    "
             + NORMALIZE)),
    # CS231n's staged backward, node by node through the computational graph.
    variant("staged_backward",
            ("bn_backward",
             "    dx = channel_shape(inv_std, dy) / m * (\n"
             "        m * dx_hat\n"
             "        - dx_hat.sum(axis=reduce_axes, keepdims=True)\n"
             "        - x_hat * (dx_hat * x_hat).sum(axis=reduce_axes, keepdims=True)\n"
             "    )\n",
             "    istd = channel_shape(inv_std, dy)\n"
             "    xmu = x_hat / istd\n"
             "    divar = (dx_hat * xmu).sum(axis=reduce_axes, keepdims=True)\n"
             "    dvar = 0.5 * istd * (-istd ** 2 * divar)\n"
             "    dxmu = dx_hat * istd + 2 * xmu * np.ones_like(dy) / m * dvar\n"
             "    dx = dxmu - dxmu.sum(axis=reduce_axes, keepdims=True) / m\n")),
    # The mean as (1/m) * sum(x): one ulp off on a constant float32 channel, still correct.
    variant("mean_as_sum_times_reciprocal",
            ("batch_mean", "return x.mean(axis=reduce_axes)",
             "m = x.size // x.shape[1]\n    return (1 / m) * x.sum(axis=reduce_axes)")),
]
