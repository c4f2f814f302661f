"""Planted bugs for 02_train_vs_eval_numpy: the classic mistakes of running statistics and eval mode."""

from . import plant, variant

MEAN_UPDATE = "layer.running_mean = (1 - weight) * layer.running_mean + weight * mean"
VAR_UPDATE = "layer.running_var = (1 - weight) * layer.running_var + weight * unbiased_var"
BESSEL = "unbiased_var = var * m / (m - 1)"
CUMULATIVE = "weight = 1.0 / layer.num_batches_tracked"
USE_BATCH = "use_batch_statistics = layer.training or not layer.track_running_stats"
UPDATE = "update_running_statistics = layer.training and layer.track_running_stats"
BACKWARD_BRANCH = "if used_batch_statistics:"

MUTANTS = [
    plant("momentum_convention_reversed", "momentum_reversed",
          ("forward", MEAN_UPDATE, "layer.running_mean = weight * layer.running_mean + (1 - weight) * mean"),
          ("forward", VAR_UPDATE, "layer.running_var = weight * layer.running_var + (1 - weight) * unbiased_var")),
    # A wrong update costs the training checks; eval mode is judged from the student's own statistics.
    plant("biased_running_var", "biased_running_var",
          ("forward", BESSEL, "unbiased_var = var"), loses=("test_forward_training",),
          keeps=("test_forward_eval", "test_backward_eval")),
    plant("running_replaced_by_batch", "running_replaced_by_batch",
          ("forward", MEAN_UPDATE, "layer.running_mean = mean"), ("forward", VAR_UPDATE, "layer.running_var = unbiased_var")),
    plant("running_var_from_mean", "running_var_from_mean",
          ("forward", VAR_UPDATE, "layer.running_var = (1 - weight) * layer.running_var + weight * mean")),
    plant("running_var_plus_eps", "running_var_plus_eps",
          ("forward", VAR_UPDATE,
           "layer.running_var = (1 - weight) * layer.running_var + weight * (unbiased_var + layer.eps)")),
    plant("bessel_correction_over_n", "bessel_over_n",
          ("forward", BESSEL, "unbiased_var = var * x.shape[0] / (x.shape[0] - 1)")),
    plant("statistics_updated_in_eval", "updated_in_eval",
          ("forward", UPDATE, "update_running_statistics = layer.track_running_stats")),
    plant("batch_statistics_in_eval", "batch_statistics_in_eval",
          ("forward", USE_BATCH, "use_batch_statistics = True")),
    plant("mode_ignored", "batch_statistics_in_eval",
          ("forward", USE_BATCH, "use_batch_statistics = True"),
          ("forward", UPDATE, "update_running_statistics = layer.track_running_stats")),
    plant("running_statistics_in_training", "running_statistics_in_training",
          ("forward", "if not use_batch_statistics:\n", "if layer.track_running_stats:\n")),
    plant("momentum_none_ignored", "momentum_none_ignored",
          ("forward", CUMULATIVE, "weight = 0.1")),
    plant("cumulative_average_off_by_one", "cumulative_off_by_one",
          ("forward", CUMULATIVE, "weight = 1.0 / (layer.num_batches_tracked + 1)")),
    plant("num_batches_tracked_not_counted", "count_not_incremented",
          ("forward", "layer.num_batches_tracked += 1", "pass  # the count is forgotten")),
    plant("running_var_initialised_to_zeros", "running_var_zeros",
          ("init", "self.running_var = np.ones(num_features)", "self.running_var = np.zeros(num_features)")),
    plant("eval_backward_through_batch_statistics", "eval_backward_through_batch_statistics",
          ("backward", BACKWARD_BRANCH, "if True:")),
    plant("unbiased_variance_for_normalizing", "unbiased_variance",
          ("forward", "var = x64.var(axis=axes)", "var = x64.var(axis=axes, ddof=1)"),
          ("forward", BESSEL, "unbiased_var = var")),
    plant("layer_eps_ignored", "eps_ignored",
          ("forward", "inv_std = 1.0 / np.sqrt(var + layer.eps)", "inv_std = 1.0 / np.sqrt(var + 1e-5)")),
    plant("no_error_for_one_value", "returned without an error",
          ("forward", "if use_batch_statistics and m == 1:", "if False:")),
    plant("eval_returns_none", "must return the layer itself",
          ("init", "return self.train(False)", "self.train(False)")),
    plant("output_promoted_to_float64", "expected dtype float32",
          ("forward", "return y.astype(x.dtype)", "return y")),
    plant("input_modified_in_place", "input_modified_in_place",
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

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # The moving average written as a step towards the batch statistic, in place on the layer's own arrays.
    variant("moving_average_as_an_increment",
            ("forward", MEAN_UPDATE, "layer.running_mean += weight * (mean - layer.running_mean)"),
            ("forward", VAR_UPDATE, "layer.running_var += weight * (unbiased_var - layer.running_var)")),
    variant("warning_in_unused_computation",
            ("forward", "inv_std = 1.0 / np.sqrt(var + layer.eps)",
             "spread = 1.0 / np.sqrt(var)  # inf on a constant channel\n    inv_std = 1.0 / np.sqrt(var + layer.eps)")),
]
