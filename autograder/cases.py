"""Random inputs that look like real activations, and the shapes checks use.

Each channel gets its own non-trivial mean and scale; one channel of every
multi-channel input is constant (variance exactly 0). The constant is a
dyadic number so that its mean is exact in float32 and float64 alike and a
correct implementation centres it to exactly 0.
"""

import numpy as np

CONSTANT_VALUE = 2.5

# (N, C), images (N, C, H, W), odd sizes everywhere. The hidden tests' shapes
# are the instructor's (autograder.grading.hidden), not part of this package.
VISIBLE_SHAPES = ((8, 3), (16, 4, 5, 5), (7, 3, 5, 3))


# Below this many values per channel float32 batch norm is ill-conditioned
# (two values normalize to +-1 whatever they are), so float32 cases need more.
MIN_FLOAT32_BATCH = 8


def batch_size(shape):
    """m, the number of values per channel: N times the spatial sizes."""
    return int(np.prod(shape)) // shape[1]


def channel_axes(ndim):
    """The axes batch norm reduces over: every axis but the channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def channel_shape(vector, like):
    """A (C,) vector (array or tensor) reshaped to broadcast along axis 1 of ``like``."""
    return vector.reshape((1, -1) + (1,) * (like.ndim - 2))


def activations(shape, dtype=np.float64, seed=0, constant_channel=None):
    """A batch with per-channel mean in [-4, 6) and std in [0.5, 3).

    The constant channel is there by default in float64 only: in float32 a
    correct implementation that computes the mean as ``(1 / m) * sum(x)`` is an
    ulp off on it, and ``1 / sqrt(eps)`` amplifies that a few hundred times, so
    float32 cases stay well conditioned (the mistakes a constant channel
    exposes, a missing eps above all, are caught in float64).
    """
    if constant_channel is None:
        constant_channel = np.dtype(dtype) == np.float64
    rng = np.random.default_rng(seed)
    channels = shape[1]
    broadcast = (1, channels) + (1,) * (len(shape) - 2)
    means = rng.uniform(-4.0, 6.0, size=channels).reshape(broadcast)
    stds = rng.uniform(0.5, 3.0, size=channels).reshape(broadcast)
    x = means + stds * rng.standard_normal(shape)
    if constant_channel and channels > 1:
        x[:, -1] = CONSTANT_VALUE
    return x.astype(dtype)


def affine_parameters(channels, dtype=np.float64, seed=0):
    """Random gamma (never near 0, sometimes negative) and beta."""
    rng = np.random.default_rng(seed + 10_000)
    gamma = rng.uniform(0.5, 2.0, size=channels) * rng.choice([-1.0, 1.0], size=channels)
    beta = rng.uniform(-2.0, 2.0, size=channels)
    return gamma.astype(dtype), beta.astype(dtype)


def upstream_gradient(shape, dtype=np.float64, seed=0):
    """A random dL/dy with a non-zero mean, so that every term of dx matters."""
    rng = np.random.default_rng(seed + 20_000)
    return (0.7 + rng.standard_normal(shape)).astype(dtype)


def case_seeds(seed, count):
    """``count`` seeds for the cases of one check, derived from the inputs' ``seed``."""
    return [seed + 7 * i for i in range(count)]


def batches(inputs, dtypes):
    """(case description, x, gamma, beta, dy) as NumPy arrays, for every shape of ``inputs`` and every dtype.

    Float32 cases are left out where a batch is too small to be well conditioned.
    """
    for shape, seed in zip(inputs.shapes, case_seeds(inputs.seed, len(inputs.shapes))):
        for dtype in dtypes:
            if np.dtype(dtype) == np.float32 and batch_size(shape) < MIN_FLOAT32_BATCH:
                continue
            gamma, beta = affine_parameters(shape[1], dtype, seed)
            case = {"shape": shape, "dtype": np.dtype(dtype).name, "seed": seed}
            yield case, activations(shape, dtype, seed), gamma, beta, upstream_gradient(shape, dtype, seed)
