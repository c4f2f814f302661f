"""Checks for Chapter 1, Triton (optional): batch norm as Triton kernels inside a ``torch.autograd.Function``.

``batch_norm_triton`` has the semantics of the PyTorch exercise's ``batch_norm``, so these are the checks of
:mod:`autograder.four_steps_torch`, run on the Triton exercise's names (``TritonBatchNormFunction``,
``batch_norm_triton``), in float32 only, on shapes a kernel gets wrong where a PyTorch expression cannot: m, the
number of values per channel, odd (a partial last block for every power-of-two BLOCK) and from less than one block
of 64 to several, and a large mean (1e4) that a one-pass variance ``E[x^2] - E[x]^2`` cannot survive in float32.
Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``), which is slow: the shapes are small.
Each check here is the PyTorch exercise's (already graded: warnings captured, quoted on failure) with these inputs.
"""

from dataclasses import dataclass

from . import four_steps_torch

SUBJECT = four_steps_torch.Subject(
    function_class="TritonBatchNormFunction", function="batch_norm_triton", dtypes=("float32",),
    renamed_mistakes=(("channels_mixed_by_reshape", "triton_channels_last_offsets"),
                      ("function_bypassed", "triton_function_bypassed")),
    value_hint="triton_mask_missing")

# m = 8 (less than one block), 105 and 297 (two and five blocks of 64, the last one partial), 400 (images).
SHAPES = ((8, 3), (7, 3, 5, 3), (3, 2, 11, 9), (16, 2, 5, 5))


@dataclass(frozen=True)
class Inputs(four_steps_torch.Inputs):
    """What a check runs the student's kernels on (the PyTorch exercise's inputs, with Triton's defaults)."""

    shapes: tuple = SHAPES
    structure_shape: tuple = (8, 3)
    large_means: tuple = (((64, 2), 1e4),)
    subject: four_steps_torch.Subject = SUBJECT


VISIBLE = Inputs()


def check_structure(TritonBatchNormFunction, batch_norm_triton, device, inputs=VISIBLE):
    """TritonBatchNormFunction subclasses torch.autograd.Function, and batch_norm_triton's output uses its backward."""
    __tracebackhide__ = True
    four_steps_torch.check_structure(TritonBatchNormFunction, batch_norm_triton, device, inputs)


def check_forward(batch_norm_triton, device, inputs=VISIBLE):
    """batch_norm_triton(x, gamma, beta[, eps]) equals torch's training-mode batch norm in float32, large mean too."""
    __tracebackhide__ = True
    four_steps_torch.check_forward(batch_norm_triton, device, inputs)


def check_dgamma_dbeta(batch_norm_triton, device, inputs=VISIBLE):
    """gamma.grad and beta.grad from your TritonBatchNormFunction.backward equal torch autograd's (float32)."""
    __tracebackhide__ = True
    four_steps_torch.check_dgamma_dbeta(batch_norm_triton, device, inputs)


def check_dx(batch_norm_triton, device, inputs=VISIBLE):
    """x.grad from your TritonBatchNormFunction.backward equals torch autograd's (float32)."""
    __tracebackhide__ = True
    four_steps_torch.check_dx(batch_norm_triton, device, inputs)
