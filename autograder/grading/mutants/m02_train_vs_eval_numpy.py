"""Planted bugs for 02_train_vs_eval_numpy: the classic mistakes of running statistics and eval mode."""

from . import plant

MEAN_UPDATE = "layer.running_mean = (1 - weight) * layer.running_mean + weight * mean"
VAR_UPDATE = "layer.running_var = (1 - weight) * layer.running_var + weight * unbiased_var"
BESSEL = "unbiased_var = var * m / (m - 1)"
CUMULATIVE = "weight = 1.0 / layer.num_batches_tracked"
USE_BATCH = "use_batch_statistics = layer.training or not layer.track_running_stats"
UPDATE = "update_running_statistics = layer.training and layer.track_running_stats"
BACKWARD_BRANCH = "if used_batch_statistics:"

MUTANTS = [
    plant("momentum_convention_reversed", "momentum convention is reversed",
          ("forward", MEAN_UPDATE, "layer.running_mean = weight * layer.running_mean + (1 - weight) * mean"),
          ("forward", VAR_UPDATE, "layer.running_var = weight * layer.running_var + (1 - weight) * unbiased_var")),
    plant("biased_running_var", "running_var matches the biased variance",
          ("forward", BESSEL, "unbiased_var = var")),
    plant("bessel_correction_over_n", "uses N instead of m = N*H*W",
          ("forward", BESSEL, "unbiased_var = var * x.shape[0] / (x.shape[0] - 1)")),
    plant("statistics_updated_in_eval", "running statistics changed in eval mode",
          ("forward", UPDATE, "update_running_statistics = layer.track_running_stats")),
    plant("batch_statistics_in_eval", "in eval mode you normalized with the batch statistics",
          ("forward", USE_BATCH, "use_batch_statistics = True")),
    plant("mode_ignored", "in eval mode you normalized with the batch statistics",
          ("forward", USE_BATCH, "use_batch_statistics = True"),
          ("forward", UPDATE, "update_running_statistics = layer.track_running_stats")),
    plant("running_statistics_in_training", "in training mode you normalized with the running statistics",
          ("forward", "if not use_batch_statistics:\n", "if layer.track_running_stats:\n")),
    plant("momentum_none_ignored", "momentum=None was not handled as a cumulative average",
          ("forward", CUMULATIVE, "weight = 0.1")),
    plant("cumulative_average_off_by_one", "cumulative average is off by one",
          ("forward", CUMULATIVE, "weight = 1.0 / (layer.num_batches_tracked + 1)")),
    plant("num_batches_tracked_not_counted", "num_batches_tracked is never incremented",
          ("forward", "layer.num_batches_tracked += 1", "pass  # the count is forgotten")),
    plant("running_var_initialised_to_zeros", "running_var started at zeros",
          ("init", "self.running_var = np.ones(num_features)", "self.running_var = np.zeros(num_features)")),
    plant("eval_backward_through_batch_statistics", "your backward still differentiates through",
          ("backward", BACKWARD_BRANCH, "if True:")),
    plant("unbiased_variance_for_normalizing", "you normalized with the unbiased variance",
          ("forward", "var = x64.var(axis=axes)", "var = x64.var(axis=axes, ddof=1)"),
          ("forward", BESSEL, "unbiased_var = var")),
    plant("layer_eps_ignored", "ignored the layer's eps",
          ("forward", "inv_std = 1.0 / np.sqrt(var + layer.eps)", "inv_std = 1.0 / np.sqrt(var + 1e-5)")),
    plant("no_error_for_one_value", "returned without an error",
          ("forward", "if use_batch_statistics and m == 1:", "if False:")),
    plant("eval_returns_none", "must return the layer itself",
          ("init", "return self.train(False)", "self.train(False)")),
    plant("output_promoted_to_float64", "expected dtype float32",
          ("forward", "return y.astype(x.dtype)", "return y")),
    plant("input_modified_in_place", "was modified by your function",
          ("forward", "x64 = x.astype(np.float64)", "x64 = x.astype(np.float64, copy=False)"),
          ("forward", "x_hat = (x64 - channel_shape(mean, x))",
           "x64 -= channel_shape(mean, x)\n    x_hat = (x64)")),
    plant("quiz_wrong_answer", "is not the right answer",
          ("quiz_answers", 'answer_q1 = "c"', 'answer_q1 = "a"')),
]

# A cheat: replacing the checks passes the visible tests, but the hidden tests
# re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_the_checks", "NotImplementedError",
          ("backward", "    return dx.astype(dy.dtype)\n    ### END SOLUTION",
           "    raise NotImplementedError()\n    ### END SOLUTION\n\n\n"
           "checks.check_backward = lambda *args, **kwargs: None")),
]
