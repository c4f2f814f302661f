"""The inputs of Chapter 4's checks: one :class:`Case` per call, shared by the NumPy and the PyTorch checks.

Every value gets a per-sample and a per-channel mean and scale, so that a
statistic taken over the wrong axes gives a visibly different answer. A case
can add a large mean to every value (where ``E[x^2] - E[x]^2`` cancels
catastrophically) or make the first group of values that share statistics
constant (all zero for RMSNorm), where only eps keeps the result finite.
"""

from dataclasses import dataclass

import numpy as np

from .mistaken_variants import Variant

# With a mean of 1e5 the input's own rounding (1e5 * 2**-53) shifts a correct float64 result by up to 5e-9 (20
# seeds); the one-pass E[x^2] - E[x]^2 misses by 1.7e-7 or more. Large-mean cases are judged to this tolerance.
LARGE_MEAN_TOLERANCE = 5e-8

CONSTANT_VALUE = 2.5  # dyadic: its mean is exact, so a correct implementation centres it to exactly 0


@dataclass(frozen=True)
class Case:
    """One call: the input's shape, normalized_shape or num_groups (``size``), dtype, eps (None: the default)."""

    shape: tuple
    size: object = None
    dtype: str = "float64"
    eps: object = None
    affine: bool = True
    mean: float = 0.0
    constant: bool = False

    @property
    def tolerance(self):
        """The tolerance of this case's comparisons (None: the dtype's)."""
        return LARGE_MEAN_TOLERANCE if self.mean else None

    def describe(self, kind, seed):
        """The case as the messages show it."""
        described = {"shape": self.shape}
        if kind in ("layer", "rms"):
            described["normalized_shape"] = self.size
        elif kind == "group":
            described["num_groups"] = self.size
        described["dtype"] = self.dtype
        if self.eps is not None:
            described["eps"] = self.eps
        if not self.affine:
            described["gamma, beta"] = None
        if self.mean:
            described["mean of x"] = f"{self.mean:g}"
        if self.constant:
            described["constant group"] = "the first (all zeros)" if kind == "rms" else "the first"
        described["seed"] = seed
        return described


def activations(kind, case, seed):
    """x for ``case`` (float64 or float32), with the case's large mean and constant group."""
    rng = np.random.default_rng(seed)
    shape = case.shape
    per_sample = (shape[0],) + (1,) * (len(shape) - 1)
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    means = rng.uniform(-3.0, 3.0, size=per_sample) + rng.uniform(-2.0, 2.0, size=per_channel)
    stds = rng.uniform(0.5, 2.0, size=per_sample) * rng.uniform(0.5, 2.0, size=per_channel)
    x = case.mean + means + stds * rng.standard_normal(shape)
    if case.constant:
        viewed, _ = Variant(kind, case.size).view(x)
        viewed[Variant(kind, case.size).first_group(x)] = 0.0 if kind == "rms" else CONSTANT_VALUE
    return x.astype(case.dtype)


def parameters(kind, case, seed):
    """(gamma, beta) in the case's dtype: None without affine; beta None for RMSNorm."""
    if not case.affine or kind == "instance":
        return None, None
    shape = (case.shape[1],) if kind == "group" else Variant(kind, case.size).normalized_shape
    rng = np.random.default_rng(seed + 10_000)
    gamma = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    beta = rng.uniform(-2.0, 2.0, size=shape)
    return gamma.astype(case.dtype), None if kind == "rms" else beta.astype(case.dtype)


def upstream_gradient(case, seed):
    """A random dL/dy with a non-zero mean: never sum(y), whose gradient through a normalization is near 0."""
    rng = np.random.default_rng(seed + 20_000)
    return (0.7 + rng.standard_normal(case.shape)).astype(case.dtype)


def each(kind, cases, seed):
    """(case, message description, x, gamma, beta, dy) for every case, each with its own seed."""
    for number, case in enumerate(cases):
        case_seed = seed + 7 * number
        gamma, beta = parameters(kind, case, case_seed)
        yield (case, case.describe(kind, case_seed), activations(kind, case, case_seed), gamma, beta,
               upstream_gradient(case, case_seed))
