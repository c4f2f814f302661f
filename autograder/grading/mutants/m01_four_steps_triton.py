"""Planted bugs for 01_four_steps_triton: the classic mistakes of batch norm written as Triton kernels."""

from . import plant, variant

OFFSETS = "offsets"
FORWARD = "forward_kernels"
BACKWARD = "backward_kernels"
FUNCTION = "triton_function"

WELFORD_OLD = (
    "        block_count = tl.sum(inside.to(tl.float32), axis=0)\n"
    "        block_mean = tl.sum(x, axis=0) / block_count\n"
    "        centred = tl.where(inside, x - block_mean, 0.0)\n"
    "        block_m2 = tl.sum(centred * centred, axis=0)\n"
    "        # Chan's merge of (count, mean, m2) with the block's statistics.\n"
    "        total = count + block_count\n"
    "        delta = block_mean - mean\n"
    "        mean += delta * (block_count / total)\n"
    "        m2 += block_m2 + delta * delta * (count * block_count / total)\n"
    "        count = total\n"
    "    var = m2 / count\n")
# The one-pass variance: sums of x and x^2, var = E[x^2] - E[x]^2.
ONE_PASS_NEW = (
    "        count += tl.sum(inside.to(tl.float32), axis=0)\n"
    "        mean += tl.sum(x, axis=0)\n"
    "        m2 += tl.sum(x * x, axis=0)\n"
    "    mean = mean / count\n"
    "    var = m2 / count - mean * mean\n")
# A correct two-pass scheme: the mean first, then the centred sum of squares (x read twice).
TWO_PASS_NEW = (
    "        count += tl.sum(inside.to(tl.float32), axis=0)\n"
    "        mean += tl.sum(x, axis=0)\n"
    "    mean = mean / count\n"
    "    for start in range(0, m, BLOCK):\n"
    "        j = start + tl.arange(0, BLOCK)\n"
    "        inside = j < m\n"
    "        x = tl.load(x_ptr + channel_offsets(j, c, C, S), mask=inside, other=0.0)\n"
    "        centred = tl.where(inside, x - mean, 0.0)\n"
    "        m2 += tl.sum(centred * centred, axis=0)\n"
    "    var = m2 / count\n")
STATS_LOAD = "x = tl.load(x_ptr + channel_offsets(j, c, C, S), mask=inside, other=0.0)"
MEAN_TERM = "        - tl.load(dbeta_ptr + c) / m\n"
VARIANCE_TERM = "        - x_hat * (tl.load(dgamma_ptr + c) / m)\n"

MUTANTS = [
    # The four: a one-pass variance, a missing mask on the last block, a wrong stride for channels, the
    # backward missing a term.
    plant("one_pass_variance", "one_pass_variance", (FORWARD, WELFORD_OLD, ONE_PASS_NEW),
          loses=("test_forward",), keeps=("test_structure", "test_backward_dx")),
    plant("mask_missing_on_last_block", "triton_mask_missing",
          (FORWARD, STATS_LOAD, "x = tl.load(x_ptr + channel_offsets(j, c, C, S))"),
          loses=("test_forward",), keeps=("test_structure",)),
    # Right for (N, C), where S = 1; wrong for images.
    plant("channel_stride_channels_last", "triton_channels_last_offsets",
          (OFFSETS, "return (j // S) * (C * S) + c * S + j % S", "return j * C + c"),
          loses=("test_forward", "test_backward_dx"), keeps=("test_structure",)),
    plant("dx_without_variance_term", "dx_without_variance_term", (BACKWARD, VARIANCE_TERM, ""),
          loses=("test_backward_dx",), keeps=("test_forward", "test_backward_params")),
    plant("dx_without_mean_term", "dx_without_mean_term", (BACKWARD, MEAN_TERM, ""),
          loses=("test_backward_dx",), keeps=("test_forward", "test_backward_params")),
    plant("unbiased_variance", "unbiased_variance", (FORWARD, "    var = m2 / count\n", "    var = m2 / (count - 1)\n"),
          loses=("test_forward",)),
    plant("eps_outside_root", "eps_outside_root",
          (FORWARD, "tl.store(rstd_ptr + c, 1.0 / tl.sqrt(var + eps))", "tl.store(rstd_ptr + c, 1.0 / (tl.sqrt(var) + eps))")),
    plant("dgamma_without_x_hat", "dgamma_without_x_hat",
          (BACKWARD, "sum_dy_x_hat += dy * x_hat", "sum_dy_x_hat += dy"),
          loses=("test_backward_params", "test_backward_dx"), keeps=("test_forward",)),
    plant("batch_norm_triton_bypasses_function", "triton_function_bypassed",
          ("batch_norm_triton", "return TritonBatchNormFunction.apply(x, gamma, beta, eps)",
           "return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)")),
    plant("quiz_wrong_answer", "is not the right answer", ("quiz_answers", 'answer_q2 = "b"', 'answer_q2 = "a"')),
]

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    variant("two_pass_statistics", (FORWARD, WELFORD_OLD, TWO_PASS_NEW)),
]
