"""The catalogue of classic mistakes: one key, one sentence each.

A check names a likely cause by key; the planted-bug corpus cites the same
keys. A sentence is written once and worded for the student's API: ``{axis}``
becomes ``axis`` (NumPy) or ``dim`` (PyTorch), ``{sqrt}`` ``np.sqrt`` or
``torch.sqrt``, ``{unbiased}`` how that API spells the unbiased variance. The
computation that reproduces a stateless mistake lives in
:mod:`autograder.mistaken` under the same key; the stateful ones (running
statistics) are reproduced by the layer model of :mod:`autograder.layer_model`.
"""

VOCABULARY = {
    "numpy": {"axis": "axis", "axes": "axes", "sqrt": "np.sqrt", "unbiased": "np.var(..., ddof=1)",
              "biased": "np.var(x, axis=...)", "api": "NumPy", "last": "x.transpose(0, 2, 3, 1)"},
    "torch": {"axis": "dim", "axes": "dims", "sqrt": "torch.sqrt", "unbiased": "torch.var's default",
              "biased": "x.var(dim=..., unbiased=False) or correction=0", "api": "PyTorch",
              "last": "x.permute(0, 2, 3, 1)"},
}

CATALOGUE = {
    # Per-channel statistics --------------------------------------------------------------
    "statistics_over_axis_0":
        "you reduced over {axis} 0 only; for images the statistics run over N, H and W, i.e. {axis}=(0, 2, 3) "
        "(every {axis} except the channel {axis} 1)",
    "per_sample_statistics":
        "you computed per-sample statistics (over the features of each example, as layer norm does); batch norm "
        "computes one statistic per channel over the batch",
    "statistics_over_everything":
        "you reduced over every {axis}, channel included; batch norm keeps one value per channel",
    "channels_mixed_by_reshape":
        "you reshaped (N, C, H, W) to (-1, C) without moving the channel {axis} last, which mixes values of "
        "different channels; move it last first ({last}) or reduce over {axis}=(0, 2, 3)",
    "computed_in_float32":
        "you computed in float32 (a cast such as .astype(np.float32) or .float(), or a float32 array or tensor "
        "created without the input's dtype); keep float64 input in float64",
    "unbiased_variance":
        "you normalized with the unbiased variance ({unbiased}, dividing by m - 1); training-mode batch norm "
        "uses the biased variance, dividing by m = N*H*W ({biased})",
    "standard_deviation_returned":
        "you returned the standard deviation; batch_var must return the variance (no square root)",
    "mean_not_subtracted_in_variance":
        "you returned the mean of squares without subtracting the mean first",
    # Normalizing --------------------------------------------------------------------------
    "eps_outside_root":
        "eps is added outside the square root: use {sqrt}(var + eps), not {sqrt}(var) + eps",
    "eps_subtracted":
        "eps is subtracted: use {sqrt}(var + eps), not {sqrt}(var - eps) (on a constant channel var - eps < 0 "
        "gives nan)",
    "no_eps":
        "no eps: a constant channel (variance 0) gives 0/0 = nan; divide by {sqrt}(var + eps)",
    "eps_ignored":
        "you ignored the eps you were given (the argument, or the layer's self.eps) and used 1e-5 always",
    "divided_by_variance":
        "you divided by the variance instead of the standard deviation {sqrt}(var + eps)",
    "mean_not_subtracted":
        "you did not subtract the mean before dividing",
    "broadcast_along_last_axis":
        "a per-channel vector (mean, var, gamma or beta) was broadcast along the last {axis} instead of the "
        "channel {axis} 1; reshape it to (1, C, 1, 1) for images (or (1, C) for 2-D input)",
    "gamma_beta_swapped":
        "gamma and beta (weight and bias) are swapped: y = gamma * x_hat + beta",
    "beta_missing": "beta is missing: y = gamma * x_hat + beta",
    "gamma_missing": "gamma is missing: y = gamma * x_hat + beta",
    # The backward pass ---------------------------------------------------------------------
    "dx_without_mean_term":
        "dx lacks the mean term -sum(dx_hat): the gradient through mu is missing",
    "dx_without_variance_term":
        "dx lacks the variance term -x_hat * sum(dx_hat * x_hat): the gradient through sigma^2 is missing",
    "dx_with_constant_statistics":
        "dx treats the batch statistics as constants (dx = gamma * dy / sqrt(var + eps)); the mean and the "
        "variance depend on every x, which adds two terms",
    "dx_is_dy_over_std":
        "dx = dy / sqrt(var + eps): the batch statistics are treated as constants and gamma is dropped; "
        "dx = gamma / sqrt(var + eps) * (dy - mean(dy) - x_hat * mean(dy * x_hat)), means per channel",
    "dx_without_gamma": "gamma is missing from dx: dx_hat = dy * gamma",
    "dx_sums_over_axis_0":
        "the sums in dx run over {axis} 0 only; for images sum over N, H and W ({axis}=(0, 2, 3)) and use m = N*H*W",
    "dx_with_m_equal_to_n":
        "dx uses m = N (the batch size); with images every channel has m = N*H*W values, so the factor is "
        "1 / (N*H*W)",
    "dgamma_without_x_hat": "dgamma is sum(dy); it must be sum(dy * x_hat) (dgamma without x_hat)",
    "dgamma_with_x": "dgamma uses x instead of x_hat: dgamma = sum(dy * x_hat)",
    "dgamma_averaged": "dgamma is a mean over the batch; it must be a sum",
    "dgamma_dbeta_swapped": "dgamma and dbeta are swapped",
    "dbeta_averaged": "dbeta is averaged over the batch; it must be the sum of dy",
    "gamma_beta_gradients_missing":
        "gradients of gamma and beta are missing: backward returned None for them; return (dx, dgamma, dbeta, "
        "None), with None only for eps",
    "backward_matches_a_wrong_forward":
        "your backward is the derivative of your own forward, but that forward is not batch norm: fix the "
        "forward (the forward check names its mistake), then derive the backward again",
    "triton_function_bypassed":
        "batch_norm_triton does not go through TritonBatchNormFunction.apply, so your kernels' backward is never "
        "used; batch_norm_triton returns what TritonBatchNormFunction.apply gives for x, gamma, beta and eps",
    "triton_channels_last_offsets":
        "your kernels address x as if the channel were its last {axis} (offset j * C + c, which is right for "
        "(N, C) only); in contiguous (N, C, H, W) memory value j of channel c, with S = H * W, sits at "
        "(j // S) * C * S + c * S + j % S",
    "triton_mask_missing":
        "if only shapes whose m = N*H*W is not a multiple of BLOCK fail: the last block of a channel reads or "
        "writes past its m values; give every tl.load and tl.store mask=j < m (and other=0.0 where the loaded "
        "values are summed)",
    "function_bypassed":
        "batch_norm does not go through BatchNormFunction.apply, so your explicit backward is never used "
        "(PyTorch would differentiate the operations themselves, or nothing at all); return what your Function's "
        "apply method gives for x, gamma, beta and eps",
    "input_modified_in_place":
        "an in-place operation on an argument (x -= mean, x /= std, x[...] = ..., torch's sub_/div_); work on new "
        "arrays instead, e.g. x_centered = x - mean.",
    # Folding BN into the previous layer, and where BN goes --------------------------------
    "fold_mean_term_missing":
        "the folded bias lacks the running mean: b2 = (b - running_mean) * gamma / sqrt(running_var + eps) + beta",
    "fold_bias_dropped":
        "the layer's own bias b was dropped; it passes through BN too: b2 = (b - running_mean) * scale + beta, "
        "with b = 0 only when the layer has no bias",
    "fold_input_axis_scaled":
        "you scaled W along its input axis; BN scales each output unit, so every row of W (axis 0, shape (out, ...)) "
        "is multiplied by its own gamma / sqrt(running_var + eps)",
    "fold_scale_inverted":
        "the BN scale is inverted: multiply W by gamma / sqrt(running_var + eps), do not multiply by the root",
    "placement_reversed":
        "the placement is reversed: \"bn_relu\" is Linear -> BN -> ReLU and \"relu_bn\" is Linear -> ReLU -> BN",
    "bn_skipped":
        "the BN layers were skipped: with placement \"bn_relu\" or \"relu_bn\" every hidden layer has its BN",
    "bn_without_placement":
        "with placement \"none\" there is no BN: ignore the bn entries (Linear -> ReLU only)",
    "output_layer_activated":
        "the output layer got a ReLU (or a BN): the last Linear layer gives the logits as they are",
    "fuse_hyperparameters_lost":
        "the fused convolution lost the original's stride, padding, dilation or groups: copy the convolution "
        "(copy.deepcopy(conv)) and change only its weight and bias",
    "fuse_in_training_mode":
        "a BN in training mode (or without running statistics) normalizes with each batch's statistics, so it "
        "cannot be folded: raise ValueError and say why",
    "modules_modified":
        "the modules you were given were modified; fuse into copies (copy.deepcopy) and leave the originals as "
        "they were",
    "bn_after_activation_folded":
        "a BN that follows a ReLU (or any module other than a Conv2d or Linear) was folded; only a BN directly "
        "after a Conv2d or Linear in the same Sequential can be folded into it",
    "nested_sequential_missed":
        "a Conv2d or Linear followed by a BN inside a nested nn.Sequential was left unfused: recurse into the "
        "children that are Sequentials themselves",
    "conv_bias_before_bn":
        "the convolution before BN has a bias; BN's mean subtraction cancels it, so conv_bn_relu uses bias=False",
    "padding_not_same":
        "the convolution does not keep the spatial size: for an odd kernel k use padding=k // 2",
    "preact_identity_missing":
        "the residual connection is missing: a pre-activation block returns x + conv2(relu(bn2(conv1(relu(bn1(x))))))",
    "preact_order":
        "the order is post-activation (conv -> BN -> ReLU); a pre-activation block runs bn1 -> ReLU -> conv1 -> bn2 "
        "-> ReLU -> conv2, then adds x",
    # Running statistics and modes -------------------------------------------------------------
    "momentum_reversed":
        "the momentum convention is reversed: PyTorch's momentum weights the NEW batch, running = (1 - momentum) * "
        "running + momentum * batch (the old-value convention, m * running + (1 - m) * batch with m = 0.9 or "
        "0.99, is CS231n's and Keras')",
    "biased_running_var":
        "running_var was updated with the biased variance; PyTorch stores the UNBIASED one (the batch variance "
        "times m / (m - 1)) in running_var, although it normalizes with the biased one",
    "bessel_over_n":
        "the Bessel correction used N (the batch size) instead of m = N*H*W values per channel: the unbiased "
        "variance is the biased one times m / (m - 1)",
    "running_replaced_by_batch":
        "the running statistics were replaced by the batch's instead of averaged: running = (1 - momentum) * "
        "running + momentum * batch",
    "running_var_from_mean":
        "running_var was updated with the batch mean instead of the batch's (unbiased) variance",
    "running_var_plus_eps":
        "running_var stores var + eps; store the unbiased variance itself, eps is added only when normalizing",
    "running_var_zeros":
        "running_var started at zeros (as in CS231n's starter code); PyTorch starts running_var at ones and "
        "running_mean at zeros",
    "not_updated_in_training":
        "the running statistics were not updated in training mode",
    "updated_in_eval":
        "the running statistics changed in eval mode; only training-mode forward passes update running_mean, "
        "running_var and num_batches_tracked",
    "batch_statistics_in_eval":
        "in eval mode you normalized with the batch statistics; with track_running_stats=True eval mode "
        "normalizes with running_mean and running_var",
    "mode_ignored":
        "in eval mode you normalized with the batch statistics and updated the running ones, as in training; "
        "forward must branch on self.training",
    "running_statistics_in_training":
        "in training mode you normalized with the running statistics; training mode normalizes with the batch's "
        "own mean and biased variance, and only updates the running ones",
    "momentum_none_ignored":
        "momentum=None was not handled as a cumulative average: then the weight of the new batch is "
        "1 / num_batches_tracked (counting this batch), not a fixed momentum",
    "cumulative_off_by_one":
        "the cumulative average is off by one: with momentum=None the weight of the new batch is "
        "1 / num_batches_tracked after counting it (1 for the first batch, which replaces the initial values)",
    "count_not_incremented":
        "num_batches_tracked is never incremented: add 1 for every training-mode forward pass (momentum=None "
        "divides by it)",
    "eval_backward_through_batch_statistics":
        "in eval mode the statistics are constants, so dx = dy * gamma / sqrt(running_var + eps); your backward "
        "still differentiates through the mean and variance as in training",
    "batch_statistics_detached":
        "x.grad treats the batch mean and variance as constants (they were detached or computed under "
        "torch.no_grad()); in training mode gradients must flow through the batch statistics, only the "
        "running-statistics update is detached",
    "statistics_attached_to_graph":
        "the running statistics were updated with tensors that carry gradients; update them inside "
        "`with torch.no_grad():` (or from mean.detach() and var.detach()), otherwise every step's graph stays "
        "alive through them (a memory leak, and a backward pass in eval mode fails)",
    "buffers_as_parameters":
        "a statistic is registered as a parameter (nn.Parameter): parameters are what the optimizer trains and "
        "what module.parameters() lists; statistics are state: use self.register_buffer(name, tensor)",
    "buffers_not_registered":
        "a statistic kept as a plain attribute is missing from state_dict, and .to() / .double() do not move it: "
        "register it with self.register_buffer(name, tensor)",
    "delegates_to_torch":
        "delegating to torch's own batch norm (F.batch_norm, torch.batch_norm or nn.BatchNorm*d); compute the "
        "statistics and the normalization yourself with tensor operations",
    "running_statistics_without_tracking":
        "with track_running_stats=False there are no running statistics (running_mean is None): normalize with "
        "the batch statistics in both modes and update nothing",
    # Precise BN ---------------------------------------------------------------------------
    "precise_not_in_training_mode":
        "the statistics were reset but never re-estimated: the forward passes must run in training mode "
        "(model.train()); eval-mode batch norm does not update its statistics",
    "precise_unchanged":
        "the statistics did not change: the forward passes must run in training mode (model.train()), or batch "
        "norm does not update them",
    "precise_exponential_average":
        "an exponential moving average with the layer's momentum, not a cumulative average: set "
        "layer.momentum = None during the passes (and reset the statistics first)",
    "precise_not_reset":
        "the statistics were not reset first: num_batches_tracked kept counting, so momentum=None blended these "
        "batches into the old average; reset_running_stats() before the passes",
    "precise_last_batch_only":
        "only the last batch counts: average over all batches (momentum=None), do not replace",
    "precise_skipped_own_layer":
        "recompute_bn_stats skipped your BatchNorm layer; look for it as well as torch's layers: "
        "isinstance(m, (nn.modules.batchnorm._BatchNorm, BatchNorm))",
    "momentum_not_restored":
        "momentum not restored: precise BN sets momentum=None only during the passes; save each layer's momentum "
        "first and put it back afterwards",
    "mode_not_restored":
        "training mode not restored: remember model.training before calling model.train(), and restore it "
        "afterwards (model.train(was_training))",
    # The variants: layer, group, instance and RMS normalization ---------------------------
    "ln_over_batch":
        "you reduced over the batch {axis} 0, as batch norm does; layer norm computes one mean and variance per "
        "sample, over the trailing normalized_shape {axes}",
    "ln_last_axis_only":
        "you reduced over the last {axis} only; normalized_shape (for example (C, H, W)) names every trailing "
        "{axis} the statistics run over: {axis}=tuple(range(-len(normalized_shape), 0))",
    "ln_over_everything":
        "you reduced over every {axis}, the batch included; layer norm keeps one mean and variance per sample",
    "variant_unbiased_variance":
        "you normalized with the unbiased variance (dividing by m - 1); layer, group and instance norm use the "
        "biased variance, dividing by the number m of values normalized together",
    "variant_no_eps":
        "no eps: a constant group of values (variance 0) gives 0/0 = nan; divide by {sqrt}(var + eps)",
    "rms_eps_none":
        "eps=None was not handled as torch does: it means the machine epsilon of the computation dtype, "
        "torch.finfo(dtype).eps (float64's for float64 input; float32's for float32, float16 and bfloat16 input)",
    "rms_low_precision_computed":
        "you computed in the input's float16/bfloat16: x ** 2 overflows float16 above 256 and rounds coarsely; "
        "as torch does, compute in float32 (x.float()) and cast the result back once, at the end",
    "rms_low_precision_cast_before_weight":
        "you cast back to the input's dtype before multiplying by the weight; torch multiplies by the weight in "
        "float32 and rounds once: (x_float * rsqrt(mean + eps) * weight.float()).to(x.dtype)",
    "delegates_to_torch_normalization":
        "delegating to torch's own normalization (F.layer_norm, F.group_norm, F.rms_norm, their torch.* forms or "
        "the nn modules); compute the statistics and the normalization yourself with tensor operations",
    "sync_local_only":
        "each process returned its own batch's statistics: gather every process's count, mean and centred sum of "
        "squares (dist.all_gather or all_reduce) and merge them",
    "sync_variance_averaged":
        "you averaged the processes' variances; that ignores how far each process's mean lies from the global "
        "mean (and, with uneven sizes, how many values each has): merge counts, means and centred sums as "
        "Chan's formula does",
    "sync_means_without_counts":
        "you averaged the processes' means without weighting them by their counts; with uneven batch sizes the "
        "global mean is sum(n_i * mean_i) / sum(n_i)",
    "sync_summed_not_averaged":
        "you all_reduce'd the per-process means with SUM and did not divide: the result is the sum over processes",
    "one_pass_variance":
        "with a large mean, the variance E[x^2] - E[x]^2 (one pass) subtracts two nearly equal numbers and loses "
        "its digits (catastrophic cancellation); subtract the mean first: mean((x - mean) ** 2)",
    "variant_eps_ignored":
        "you ignored the eps you were given and used the default always",
    "gn_per_group_affine":
        "gamma and beta were applied per group (one value for each group); in group norm they are per channel, "
        "shape (C,), applied after the groups are put back to (N, C, ...)",
    "gn_groups_interleaved":
        "your groups interleave the channels (channel c in group c % G); group g is the contiguous block of "
        "channels g*C/G ... (g+1)*C/G - 1: reshape to (N, G, C // G, ...)",
    "gn_per_channel":
        "you normalized each channel on its own (instance norm); group norm shares one mean and variance among "
        "the C / G channels of a group",
    "gn_over_batch":
        "your statistics include the batch {axis}; group norm computes them per sample and group",
    "in_over_batch":
        "you reduced over the batch {axis} too, as batch norm does; instance norm computes one mean and variance "
        "per sample and channel, over the spatial {axes} 2, 3, ... only",
    "in_over_channels":
        "you reduced over the channel {axis} too, as layer norm does; instance norm computes one mean and variance "
        "per sample and channel, over the spatial {axes} 2, 3, ... only",
    "instance_one_value":
        "with one spatial value per channel, instance norm would map every value to 0 (x - mean is 0): raise "
        "ValueError, as torch does in training",
    "rms_mean_subtracted":
        "you subtracted the mean, as layer norm does; RMSNorm only divides by the root mean square "
        "{sqrt}(mean(x ** 2) + eps), without centring",
    "rms_eps_outside_root":
        "eps is added outside the square root: rms = {sqrt}(mean(x ** 2) + eps), not {sqrt}(mean(x ** 2)) + eps",
    "rms_sum_not_mean":
        "you divided by the root of the sum of squares; RMS is the root of their mean, {sqrt}(mean(x ** 2) + eps)",
    "rms_no_eps":
        "no eps: an all-zero row gives 0/0 = nan; divide by {sqrt}(mean(x ** 2) + eps)",
    "rms_dx_constant_rms":
        "dx treats the root mean square as a constant (dx = gamma * dy / rms); rms depends on every x of the row, "
        "which adds the term -x * mean(gamma * dy * x) / rms ** 3",
    "rms_dx_with_mean_term":
        "dx has a mean term -mean(dx_hat), as layer norm's does; RMSNorm subtracts no mean, so its dx has only the "
        "term through rms",
    "variant_dx_constant_statistics":
        "dx treats the mean and the variance as constants (dx = gamma * dy / {sqrt}(var + eps)); both depend on "
        "every x of the group they are computed over, which adds two terms",
    "variant_gradient_sums":
        "dgamma and dbeta have the shape of gamma: sum dy * x_hat (and dy) over every {axis} that gamma is "
        "broadcast along (the batch {axes} for layer norm; {axis}=(0, 2, 3, ...) for group norm)",
    "affine_none_gradients":
        "without gamma and beta (None) there is nothing to differentiate: the backward returns None for dgamma "
        "and dbeta",
}


def sentence(key, api="numpy"):
    """The catalogue's sentence for ``key``, in the words of ``api`` ("numpy" or "torch").

    A key may carry a variant after a slash (``"updated_in_eval/after_normalizing"``):
    several computations of one mistake, named by one sentence.
    """
    return CATALOGUE[key.split("/")[0]].format(**VOCABULARY[api])
