"""Planted bugs for 04_variants_torch: the classic mistakes of normalization modules and of synchronized statistics."""

from . import plant, variant

LN, GN, RMS, SYNC = "layer_norm_module", "group_norm_module", "rms_norm_module", "sync"
LN_SHAPE = ("        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) "
            "else tuple(normalized_shape)\n        self.eps = eps\n        self.elementwise_affine = elementwise_affine\n"
            "        placement")
LN_STATS = ("        dims = tuple(range(-len(self.normalized_shape), 0))\n        mean = x.mean(dim=dims, keepdim=True)\n"
            "        var = x.var(dim=dims, keepdim=True, unbiased=False)")
GN_STATS = ("        grouped = x.reshape(n, self.num_groups, -1)\n        mean = grouped.mean(dim=-1, keepdim=True)\n"
            "        var = grouped.var(dim=-1, keepdim=True, unbiased=False)")
GN_AFFINE = "            y = y * self.weight.reshape(per_channel)"
RMS_COMPUTATION = "        computation = torch.float64 if x.dtype == torch.float64 else torch.float32"
RMS_WEIGHT = "            y = y * self.weight.to(computation)\n        return y.to(x.dtype)"
SYNC_GATHER = ("    dist.all_gather(counts, count, group=group)\n    dist.all_gather(means, mean, group=group)\n"
               "    dist.all_gather(sums, centred_sum, group=group)")
SYNC_RETURN = "    return merged_mean, merged_sum / total"

MUTANTS = [
    plant("ln_shape_kept_as_int", "store normalized_shape as a tuple",
          (LN, LN_SHAPE, LN_SHAPE.replace("(normalized_shape,) if isinstance(normalized_shape, int) "
                                          "else tuple(normalized_shape)", "normalized_shape")),
          loses=("test_layer_norm_structure",)),
    plant("ln_bias_false_ignored", "expected the parameters",
          (LN, "if elementwise_affine and bias else None", "if elementwise_affine else None"),
          loses=("test_layer_norm_structure",)),
    plant("ln_unbiased_variance", "variant_unbiased_variance",
          (LN, LN_STATS, LN_STATS.replace(", unbiased=False", "")),
          loses=("test_layer_norm_module",), keeps=("test_layer_norm_structure",)),
    plant("ln_last_dimension_only", "ln_last_axis_only",
          (LN, LN_STATS, LN_STATS.replace("tuple(range(-len(self.normalized_shape), 0))", "(-1,)")),
          loses=("test_layer_norm_module",)),
    plant("ln_delegates_to_torch", "delegates_to_torch_normalization",
          (LN, LN_STATS, "        return torch.nn.functional.layer_norm(x, self.normalized_shape, self.weight, "
                         "self.bias, self.eps)\n" + LN_STATS),
          loses=("test_layer_norm_module",), keeps=("test_layer_norm_structure",)),
    plant("gn_groups_interleaved", "gn_groups_interleaved",
          (GN, GN_STATS, "        grouped = x.reshape(n, c // self.num_groups, self.num_groups, -1)\n"
                         "        mean = grouped.mean(dim=(1, 3), keepdim=True)\n"
                         "        var = grouped.var(dim=(1, 3), keepdim=True, unbiased=False)"),
          loses=("test_group_norm_module",)),
    plant("gn_indivisible_accepted", "must raise ValueError",
          (GN, "        if num_channels % num_groups != 0:\n", "        if False:\n"),
          loses=("test_group_norm_structure",), keeps=("test_group_norm_module",)),
    plant("gn_per_group_gamma", "gn_per_group_affine",
          (GN, GN_AFFINE, "            group_of = torch.arange(c, device=x.device) // (c // self.num_groups)\n"
                          "            y = y * self.weight[group_of].reshape(per_channel)"),
          loses=("test_group_norm_module",), keeps=("test_group_norm_structure",)),
    plant("gn_statistics_detached", "variant_dx_constant_statistics",
          (GN, GN_STATS, GN_STATS.replace("keepdim=True)\n        var", "keepdim=True).detach()\n        var")
                                 .replace("unbiased=False)", "unbiased=False).detach()")),
          loses=("test_group_norm_module",)),
    plant("rms_eps_none_as_1e6", "rms_eps_none",
          (RMS, "        eps = torch.finfo(computation).eps if self.eps is None else self.eps",
           "        eps = 1e-6 if self.eps is None else self.eps"),
          loses=("test_rms_norm_module",), keeps=("test_rms_norm_structure",)),
    plant("rms_computed_in_low_precision", "rms_low_precision_computed",
          (RMS, RMS_COMPUTATION, "        computation = x.dtype"),
          loses=("test_rms_norm_low_precision",), keeps=("test_rms_norm_module",)),
    plant("rms_cast_before_weight", "rms_low_precision_cast_before_weight",
          (RMS, RMS_WEIGHT, "            y = y.to(x.dtype) * self.weight\n        return y.to(x.dtype)"),
          loses=("test_rms_norm_low_precision",), keeps=("test_rms_norm_module",)),
    plant("rms_mean_subtracted", "rms_mean_subtracted",
          (RMS, "        values = x.to(computation)\n",
           "        values = x.to(computation)\n        values = values - values.mean(dim=dims, keepdim=True)\n"),
          loses=("test_rms_norm_module",)),
    plant("sync_local_statistics_only", "sync_local_only",
          (SYNC, SYNC_RETURN, "    return mean, centred_sum / count"), loses=("test_sync_batch_stats",)),
    plant("sync_variances_averaged", "sync_variance_averaged",
          (SYNC, SYNC_RETURN, "    return merged_mean, sum(s / n for s, n in zip(sums, counts)) / world"),
          loses=("test_sync_batch_stats",)),
    plant("sync_means_without_counts", "sync_means_without_counts",
          (SYNC, SYNC_RETURN, "    return sum(means) / world, merged_sum / total"), loses=("test_sync_batch_stats",)),
    plant("sync_one_pass_variance", "one_pass_variance",
          (SYNC, SYNC_RETURN,
           "    moments = torch.stack([x.sum(dim=axes), (x ** 2).sum(dim=axes)])\n"
           "    dist.all_reduce(moments, group=group)\n    n = sum(counts)\n"
           "    return moments[0] / n, moments[1] / n - (moments[0] / n) ** 2"),
          loses=("test_sync_batch_stats",)),
    plant("sync_unbiased_variance", "unbiased_variance",
          (SYNC, SYNC_RETURN, "    return merged_mean, merged_sum / (total - 1)"), loses=("test_sync_batch_stats",)),
    plant("quiz_wrong_answer", "is not the right answer", ("quiz_answers", 'answer_q2 = "c"', 'answer_q2 = "a"')),
]

# A cheat: replacing a check passes the visible test, but the hidden tests re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_a_check", "not implemented yet",
          (SYNC, "    axes = [0] + list(range(2, x.dim()))", "    raise NotImplementedError()"),
          (SYNC, SYNC_RETURN + "\n    ### END SOLUTION",
           SYNC_RETURN + "\n    ### END SOLUTION\n\n\nchecks.check_sync_batch_stats = lambda *args, **kwargs: None"),
          loses=("test_sync_batch_stats",)),
]

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # Two passes across processes: the global mean first, then the global centred sum of squares.
    variant("sync_two_all_reduces",
            (SYNC, SYNC_RETURN,
             "    shape = (1, -1) + (1,) * (x.dim() - 2)\n"
             "    totals = torch.cat([count, x.sum(dim=axes)])\n    dist.all_reduce(totals, group=group)\n"
             "    global_mean = totals[1:] / totals[0]\n"
             "    squares = ((x - global_mean.reshape(shape)) ** 2).sum(dim=axes)\n"
             "    dist.all_reduce(squares, group=group)\n    return global_mean, squares / totals[0]")),
    # Layer norm through rsqrt and a centred mean of squares.
    variant("ln_rsqrt",
            (LN, LN_STATS + "\n        y = (x - mean) / torch.sqrt(var + self.eps)",
             "        dims = tuple(range(-len(self.normalized_shape), 0))\n"
             "        centred = x - x.mean(dim=dims, keepdim=True)\n"
             "        y = centred * torch.rsqrt(centred.pow(2).mean(dim=dims, keepdim=True) + self.eps)")),
    # A torch UserWarning from an unused computation never costs points.
    variant("user_warning_in_unused_computation",
            (RMS, "        values = x.to(computation)\n",
             "        values = x.to(computation)\n        torch.tensor([1.0, 2.0]).std(dim=0, correction=2)\n")),
]
