"""Planted bugs for 02_train_vs_eval_torch: the classic mistakes of a train/eval BatchNorm module and of precise BN."""

from . import plant, variant

MODULE = "batch_norm_module"
RECOMPUTE = "recompute_bn_stats"
UPDATE = ("self.running_mean.mul_(1 - factor).add_(factor * mean)\n"
          "            self.running_var.mul_(1 - factor).add_(factor * unbiased_var)")
USE_BATCH = "use_batch_statistics = self.training or not self.track_running_stats"
RUNNING_IN_EVAL = "mean, var = self.running_mean, self.running_var"
CALL_UPDATE = "self.update_running_statistics(mean, var, values_per_channel)"
REGISTER_MEAN = 'self.register_buffer("running_mean", torch.zeros(num_features, **factory))'
REGISTER_VAR = 'self.register_buffer("running_var", torch.ones(num_features, **factory))'
FORWARD_START = "reduce_dims = [0] + list(range(2, x.dim()))\n"

MUTANTS = [
    plant("momentum_convention_reversed", "momentum_reversed",
          (MODULE, UPDATE, "self.running_mean.mul_(factor).add_((1 - factor) * mean)\n"
                           "            self.running_var.mul_(factor).add_((1 - factor) * unbiased_var)")),
    plant("biased_running_var", "biased_running_var",
          (MODULE, "unbiased_var = var * values_per_channel / (values_per_channel - 1)", "unbiased_var = var")),
    plant("correction_with_batch_size", "bessel_over_n",
          (MODULE, CALL_UPDATE, "self.update_running_statistics(mean, var, x.shape[0])")),
    plant("statistics_updated_in_eval", "updated_in_eval",
          (MODULE, RUNNING_IN_EVAL,
           "self.update_running_statistics(x.mean(dim=reduce_dims), x.var(dim=reduce_dims, correction=0), "
           "x.numel() // x.shape[1])\n            " + RUNNING_IN_EVAL)),
    plant("batch_statistics_in_eval", "batch_statistics_in_eval",
          (MODULE, USE_BATCH, "use_batch_statistics = True")),
    plant("running_statistics_in_training", "running_statistics_in_training",
          (MODULE, CALL_UPDATE, CALL_UPDATE + "\n                " + RUNNING_IN_EVAL)),
    plant("running_var_plus_eps", "running_var_plus_eps",
          (MODULE, "self.running_var.mul_(1 - factor).add_(factor * unbiased_var)",
           "self.running_var.mul_(1 - factor).add_(factor * (unbiased_var + self.eps))")),
    plant("momentum_none_ignored", "momentum_none_ignored",
          (MODULE, "factor = 1.0 / float(self.num_batches_tracked)", "factor = 0.1")),
    plant("num_batches_tracked_not_counted", "count_not_incremented",
          (MODULE, "self.num_batches_tracked.add_(1)\n            ", "")),
    plant("buffers_as_parameters", "buffers_as_parameters",
          (MODULE, REGISTER_MEAN,
           "self.running_mean = nn.Parameter(torch.zeros(num_features, **factory), requires_grad=False)"),
          (MODULE, REGISTER_VAR,
           "self.running_var = nn.Parameter(torch.ones(num_features, **factory), requires_grad=False)")),
    # Registration is the parameters-and-buffers part's, and the running-statistics part's: training keeps its points.
    plant("buffers_as_plain_attributes", "buffers_not_registered",
          (MODULE, REGISTER_MEAN, "self.running_mean = torch.zeros(num_features, **factory)"),
          (MODULE, REGISTER_VAR, "self.running_var = torch.ones(num_features, **factory)"),
          loses=("test_parameters_and_buffers",), keeps=("test_training",)),
    plant("statistics_attached_to_graph", "statistics_attached_to_graph",
          (MODULE, "with torch.no_grad():\n            self.num_batches_tracked",
           "if True:\n            self.num_batches_tracked")),
    plant("delegates_to_F_batch_norm", "delegates_to_torch",
          (MODULE, FORWARD_START,
           "return torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, "
           "self.training or not self.track_running_stats, 0.0 if self.momentum is None else self.momentum, self.eps)\n"
           "        " + FORWARD_START)),
    plant("batch_statistics_detached", "batch_statistics_detached",
          (MODULE, "mean = x.mean(dim=reduce_dims)\n", "mean = x.mean(dim=reduce_dims).detach()\n"),
          (MODULE, "var = ((x - channel_shape(mean, x)) ** 2).mean(dim=reduce_dims)",
           "var = ((x - channel_shape(mean, x)) ** 2).mean(dim=reduce_dims).detach()")),
    plant("running_statistics_without_tracking", "running_statistics_without_tracking",
          (MODULE, USE_BATCH, "use_batch_statistics = self.training")),
    plant("unbiased_variance_to_normalize", "unbiased_variance",
          (MODULE, "var = ((x - channel_shape(mean, x)) ** 2).mean(dim=reduce_dims)",
           "var = ((x - channel_shape(mean, x)) ** 2).sum(dim=reduce_dims) / (values_per_channel - 1)")),
    plant("recompute_skips_your_layer", "precise_skipped_own_layer",
          (RECOMPUTE, "isinstance(module, (nn.modules.batchnorm._BatchNorm, BatchNorm))",
           "isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))")),
    plant("recompute_momentum_not_restored", "momentum_not_restored",
          (RECOMPUTE, "        layer.momentum = momentum\n", "        pass\n")),
    plant("recompute_exponential_average", "precise_exponential_average",
          (RECOMPUTE, "        layer.momentum = None  # a cumulative average: batch k gets weight 1/k\n", "")),
    plant("recompute_mode_not_restored", "mode_not_restored",
          (RECOMPUTE, "        module.training = training\n", "        pass\n")),
    plant("quiz_wrong_answer", "is not the right answer",
          ("quiz_answers", 'answer_q1 = "c"', 'answer_q1 = "a"')),
]

# A cheat: replacing the checks passes the visible tests, but the hidden tests
# re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_the_checks", "NotImplementedError",
          ("recompute_bn_stats", "    return model\n    ### END SOLUTION",
           "    raise NotImplementedError()\n    ### END SOLUTION\n\n\n"
           "checks.check_recompute_bn_stats = lambda *args, **kwargs: None")),
]

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # Buffers reassigned with new tensors (nn.Module keeps them registered) from detached statistics.
    variant("buffers_reassigned_from_detached_statistics",
            (MODULE, UPDATE, "self.running_mean = (1 - factor) * self.running_mean + factor * mean.detach()\n"
                             "            self.running_var = (1 - factor) * self.running_var + factor * unbiased_var.detach()")),
    variant("user_warning_in_unused_computation",
            (MODULE, "            mean = x.mean(dim=reduce_dims)\n",
             "            mean = x.mean(dim=reduce_dims)\n            unused = mean.new_tensor(mean)\n")),
]
