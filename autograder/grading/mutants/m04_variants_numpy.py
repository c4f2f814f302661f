"""Planted bugs for 04_variants_numpy: the classic mistakes of layer, group, instance and RMS normalization."""

from . import plant, variant

LN, GN, IN, RMS = "layer_norm", "group_norm", "instance_norm", "rms_norm"
LN_AXES = "    axes = trailing_axes(x, normalized_shape)\n    mean = x.mean(axis=axes, keepdims=True)"
LN_STD = "    std = np.sqrt(x.var(axis=axes, keepdims=True) + eps)\n    x_hat = (x - mean) / std"
LN_DX = ("    dx = (dx_hat - dx_hat.mean(axis=axes, keepdims=True)\n"
         "          - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) / std\n    if gamma is None:")
GN_GROUPS = ("    grouped = x.reshape((n, num_groups, c // num_groups) + x.shape[2:])\n"
             "    axes = tuple(range(2, grouped.ndim))")
GN_AFFINE = "    y = gamma.reshape(per_channel) * x_hat + beta.reshape(per_channel)"
GN_DX = ("    dx = (dx_hat - dx_hat.mean(axis=axes, keepdims=True)\n"
         "          - x_hat_grouped * (dx_hat * x_hat_grouped).mean(axis=axes, keepdims=True)) / std")
IN_AXES = "    axes = tuple(range(2, x.ndim))\n    std = np.sqrt(x.var(axis=axes, keepdims=True) + eps)"
IN_DX = "    return (dy - dy.mean(axis=axes, keepdims=True) - x_hat * (dy * x_hat).mean(axis=axes, keepdims=True)) / std"
RMS_ROOT = "    rms = np.sqrt((x ** 2).mean(axis=axes, keepdims=True) + eps)\n    x_hat = x / rms"
RMS_DX = "    dx = (dx_hat - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) / rms"

MUTANTS = [
    plant("ln_over_batch_axis", "ln_over_batch",
          (LN, LN_AXES, LN_AXES.replace("trailing_axes(x, normalized_shape)", "(0,)")),
          loses=("test_layer_norm",), keeps=("test_group_norm", "test_rms_norm")),
    plant("ln_last_axis_only", "ln_last_axis_only",
          (LN, LN_AXES, LN_AXES.replace("trailing_axes(x, normalized_shape)", "(x.ndim - 1,)")),
          loses=("test_layer_norm",)),
    plant("ln_unbiased_variance", "variant_unbiased_variance",
          (LN, LN_STD, LN_STD.replace("keepdims=True)", "keepdims=True, ddof=1)")), loses=("test_layer_norm",)),
    plant("ln_one_pass_variance", "one_pass_variance",
          (LN, LN_STD, LN_STD.replace("x.var(axis=axes, keepdims=True)",
                                      "(x ** 2).mean(axis=axes, keepdims=True) - mean ** 2")),
          loses=("test_layer_norm",)),
    plant("ln_none_affine_not_handled", "gamma=None",
          (LN, "    y = x_hat if gamma is None else gamma * x_hat + beta", "    y = gamma * x_hat + beta"),
          loses=("test_layer_norm",)),
    plant("ln_dx_without_mean_term", "dx_without_mean_term",
          (LN, LN_DX, LN_DX.replace("dx_hat - dx_hat.mean(axis=axes, keepdims=True)", "dx_hat")),
          loses=("test_layer_norm_dx",), keeps=("test_layer_norm", "test_layer_norm_dgamma_dbeta")),
    plant("ln_dgamma_over_axis_0", "variant_gradient_sums",
          (LN, "    leading = tuple(range(dy.ndim - len(axes)))", "    leading = 0"),
          loses=("test_layer_norm_dgamma_dbeta",), keeps=("test_layer_norm", "test_layer_norm_dx")),
    plant("gn_per_group_gamma", "gn_per_group_affine",
          (GN, GN_AFFINE, "    group_of = np.arange(c) // (c // num_groups)\n"
                          "    y = gamma[group_of].reshape(per_channel) * x_hat + beta[group_of].reshape(per_channel)"),
          loses=("test_group_norm",), keeps=("test_group_norm_dx", "test_layer_norm")),
    plant("gn_groups_interleaved", "gn_groups_interleaved",
          (GN, GN_GROUPS, "    grouped = x.reshape((n, c // num_groups, num_groups) + x.shape[2:])\n"
                          "    axes = (1,) + tuple(range(3, grouped.ndim))"),
          loses=("test_group_norm",)),
    plant("gn_no_eps", "variant_no_eps",
          (GN, "    std = np.sqrt(grouped.var(axis=axes, keepdims=True) + eps)",
           "    std = np.sqrt(grouped.var(axis=axes, keepdims=True))"), loses=("test_group_norm",)),
    plant("gn_dx_without_variance_term", "dx_without_variance_term",
          (GN, GN_DX, "    dx = (dx_hat - dx_hat.mean(axis=axes, keepdims=True)) / std"),
          loses=("test_group_norm_dx",), keeps=("test_group_norm", "test_group_norm_dgamma_dbeta")),
    plant("gn_dbeta_averaged", "dbeta_averaged",
          (GN, "(dy * x_hat).sum(axis=sums), dy.sum(axis=sums)", "(dy * x_hat).sum(axis=sums), dy.mean(axis=sums)"),
          loses=("test_group_norm_dgamma_dbeta",), keeps=("test_group_norm_dx",)),
    plant("in_over_batch_axis", "in_over_batch",
          (IN, IN_AXES, IN_AXES.replace("tuple(range(2, x.ndim))", "(0,) + tuple(range(2, x.ndim))")),
          loses=("test_instance_norm",), keeps=("test_instance_norm_one_value",)),
    plant("in_one_value_accepted", "instance_one_value",
          (IN, "    if int(np.prod(x.shape[2:])) <= 1:", "    if False:"),
          loses=("test_instance_norm_one_value",), keeps=("test_instance_norm", "test_instance_norm_dx")),
    plant("in_dx_constant_statistics", "variant_dx_constant_statistics",
          (IN, IN_DX, "    return dy / std"), loses=("test_instance_norm_dx",), keeps=("test_instance_norm",)),
    plant("rms_mean_subtracted", "rms_mean_subtracted",
          (RMS, RMS_ROOT, "    rms = np.sqrt(x.var(axis=axes, keepdims=True) + eps)\n"
                          "    x_hat = (x - x.mean(axis=axes, keepdims=True)) / rms"),
          loses=("test_rms_norm",), keeps=("test_layer_norm",)),
    plant("rms_eps_outside_root", "rms_eps_outside_root",
          (RMS, RMS_ROOT, RMS_ROOT.replace("keepdims=True) + eps)", "keepdims=True)) + eps")),
          loses=("test_rms_norm",)),
    plant("rms_eps_ignored", "variant_eps_ignored",
          (RMS, RMS_ROOT, RMS_ROOT.replace("+ eps)", "+ 1e-6)")), loses=("test_rms_norm",)),
    plant("rms_dx_constant_rms", "rms_dx_constant_rms",
          (RMS, RMS_DX, "    dx = dx_hat / rms"), loses=("test_rms_norm_dx",), keeps=("test_rms_norm", "test_rms_norm_dgamma")),
    plant("rms_dx_with_mean_term", "rms_dx_with_mean_term",
          (RMS, RMS_DX, RMS_DX.replace("(dx_hat - x_hat", "(dx_hat - dx_hat.mean(axis=axes, keepdims=True) - x_hat")),
          loses=("test_rms_norm_dx",)),
    plant("computed_in_float32", "computed_in_float32",
          (LN, LN_AXES, "    x = x.astype(np.float32)\n" + LN_AXES), loses=("test_layer_norm",)),
    plant("quiz_wrong_answer", "is not the right answer", ("quiz_answers", 'answer_q2 = "a"', 'answer_q2 = "c"')),
]

# A cheat: replacing a check passes the visible test, but the hidden tests re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_a_check", "not implemented yet",
          (RMS, RMS_ROOT, "    raise NotImplementedError()\n" + RMS_ROOT),
          (RMS, "    return dx, (dy * x_hat).sum(axis=tuple(range(dy.ndim - len(axes))))\n    ### END SOLUTION",
           "    return dx, (dy * x_hat).sum(axis=tuple(range(dy.ndim - len(axes))))\n    ### END SOLUTION\n\n\n"
           "checks.check_rms_norm = lambda *args, **kwargs: None"),
          loses=("test_rms_norm",)),
]

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # Group norm as a loop over groups, each normalized like a layer norm of its channels.
    variant("gn_loop_over_groups",
            (GN, GN_GROUPS + "\n    std = np.sqrt(grouped.var(axis=axes, keepdims=True) + eps)\n"
                 "    x_hat = ((grouped - grouped.mean(axis=axes, keepdims=True)) / std).reshape(x.shape)",
             GN_GROUPS + "\n    std = np.sqrt(grouped.var(axis=axes, keepdims=True) + eps)\n"
                 "    x_hat = np.empty_like(x)\n    size = c // num_groups\n"
                 "    for g in range(num_groups):\n"
                 "        block = x[:, g * size:(g + 1) * size]\n"
                 "        block_axes = tuple(range(1, block.ndim))\n"
                 "        x_hat[:, g * size:(g + 1) * size] = (block - block.mean(axis=block_axes, keepdims=True)) / "
                 "np.sqrt(block.var(axis=block_axes, keepdims=True) + eps)")),
    # The variance as the mean of squared deviations, and dx from the explicit chain rule.
    variant("ln_explicit_chain_rule",
            (LN, LN_STD, "    centred = x - mean\n    std = np.sqrt((centred ** 2).mean(axis=axes, keepdims=True) + eps)\n"
                         "    x_hat = centred / std"),
            (LN, LN_DX, "    m = x_hat[(0,) * (dy.ndim - len(axes))].size\n"
                        "    dvar = (dx_hat * x_hat * -0.5 / std ** 2).sum(axis=axes, keepdims=True)\n"
                        "    dmean = (-dx_hat / std).sum(axis=axes, keepdims=True)\n"
                        "    dx = dx_hat / std + dvar * 2 * x_hat * std / m + dmean / m\n    if gamma is None:")),
    # A warning from an unused computation never costs points.
    variant("warning_in_unused_computation",
            (RMS, RMS_ROOT, RMS_ROOT + "\n    _ = np.log(np.zeros(1))")),
]
