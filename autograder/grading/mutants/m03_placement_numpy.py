"""Planted bugs for 03_placement_numpy: the classic mistakes of folding BN into a layer, and of placing it."""

from . import plant, variant

LINEAR, CONV, MLP = "fold_linear", "fold_conv", "mlp_forward"
SCALE = "scale = gamma / np.sqrt(running_var + eps)"
LINEAR_RETURN = "return W * scale[:, None], (b - running_mean) * scale + beta"
CONV_RETURN = "return W * scale[:, None, None, None], (b - running_mean) * scale + beta"
BN_EVAL = 'return bn["gamma"] * (z - bn["running_mean"]) / np.sqrt(bn["running_var"] + bn["eps"]) + bn["beta"]'

MUTANTS = [
    plant("folded_bias_without_running_mean", "fold_mean_term_missing",
          (LINEAR, LINEAR_RETURN, "return W * scale[:, None], b * scale + beta")),
    plant("layer_bias_dropped", "fold_bias_dropped",
          (LINEAR, LINEAR_RETURN, "return W * scale[:, None], -running_mean * scale + beta")),
    plant("columns_scaled_instead_of_rows", "fold_input_axis_scaled",
          (LINEAR, LINEAR_RETURN, "return W * scale[None, :], (b - running_mean) * scale + beta")),
    plant("eps_outside_root", "eps_outside_root",
          (LINEAR, SCALE, "scale = gamma / (np.sqrt(running_var) + eps)")),
    plant("scale_inverted", "fold_scale_inverted", (LINEAR, SCALE, "scale = gamma * np.sqrt(running_var + eps)")),
    plant("eps_argument_ignored", "eps_ignored", (LINEAR, SCALE, "scale = gamma / np.sqrt(running_var + 1e-5)")),
    plant("gamma_beta_swapped", "gamma_beta_swapped",
          (LINEAR, LINEAR_RETURN, "return W * (beta / np.sqrt(running_var + eps))[:, None], "
                                  "(b - running_mean) * beta / np.sqrt(running_var + eps) + gamma")),
    plant("float64_ones_for_affine_false", "keep W's dtype",
          (LINEAR, "gamma = np.ones(out, dtype=W.dtype) if gamma is None else gamma",
           "gamma = np.ones(out) if gamma is None else gamma")),
    plant("weight_modified_in_place", "input_modified_in_place",
          (LINEAR, LINEAR_RETURN, "W *= scale[:, None]\n    return W, (b - running_mean) * scale + beta")),
    plant("conv_input_channels_scaled", "fold_input_axis_scaled",
          (CONV, CONV_RETURN, "return W * scale[None, :, None, None], (b - running_mean) * scale + beta")),
    plant("conv_bias_dropped", "fold_bias_dropped",
          (CONV, CONV_RETURN, "return W * scale[:, None, None, None], -running_mean * scale + beta")),
    plant("placement_reversed", "placement_reversed",
          (MLP, 'if placement == "bn_relu":', 'if placement == "relu_bn":'),
          (MLP, 'elif placement == "relu_bn":', 'elif placement == "bn_relu":')),
    plant("batch_statistics_in_eval", "batch_statistics_in_eval",
          (MLP, BN_EVAL, 'return bn["gamma"] * (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + bn["eps"]) + bn["beta"]')),
    plant("relu_on_the_output_layer", "output_layer_activated",
          (MLP, "        if bn is None:  # the output layer\n            continue",
           "        if bn is None:  # the output layer\n            x = np.maximum(x, 0)\n            continue")),
    plant("bn_used_with_placement_none", "bn_without_placement",
          (MLP, "        else:\n            x = np.maximum(x, 0)", "        else:\n            x = np.maximum(batch_norm_eval(x, bn), 0)")),
    plant("bn_eps_ignored", "eps_ignored", (MLP, 'bn["running_var"] + bn["eps"]', 'bn["running_var"] + 1e-5')),
    plant("quiz_wrong_answer", "is not the right answer", ("quiz_answers", 'answer_q3 = "c"', 'answer_q3 = "a"')),
]

# A cheat: replacing a check passes the visible test, but the hidden tests re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_a_check", "not implemented yet",
          (CONV, "    " + CONV_RETURN + "\n    ### END SOLUTION",
           "    raise NotImplementedError()\n    ### END SOLUTION\n\n\n"
           "checks.check_fold_conv = lambda *args, **kwargs: None")),
]

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # The scale as a diagonal matrix: diag(s) @ W scales the rows.
    variant("rows_scaled_by_a_diagonal_matrix",
            (LINEAR, LINEAR_RETURN, "return np.diag(scale) @ W, scale * b - scale * running_mean + beta")),
]
