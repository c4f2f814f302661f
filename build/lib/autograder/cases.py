"""Random inputs that look like real activations, and the shapes checks use.

Each channel gets its own non-trivial mean and scale; one channel of every
multi-channel input is constant (variance exactly 0). The constant is a
dyadic number so that its mean is exact in float32 and float64 alike and a
correct implementation centres it to exactly 0.
"""

import numpy as np

CONSTANT_VALUE = 2.5

# (N, C), images (N, C, H, W), odd sizes everywhere.
VISIBLE_SHAPES = [(8, 3), (16, 4, 5, 5), (7, 3, 5, 3)]
# Hidden tests add a volume, a single channel, a tiny batch and a batch of one image.
HIDDEN_SHAPES = [(5, 3, 2, 3, 4), (9, 1), (2, 6), (1, 5, 3, 7), (31, 17)]


# Below this many values per channel float32 batch norm is ill-conditioned
# (two values normalize to +-1 whatever they are), so float32 cases need more.
MIN_FLOAT32_BATCH = 8


def batch_size(shape):
    """m, the number of values per channel: N times the spatial sizes."""
    return int(np.prod(shape)) // shape[1]


def shapes(hidden):
    return HIDDEN_SHAPES if hidden else VISIBLE_SHAPES


def channel_axes(ndim):
    """The axes batch norm reduces over: every axis but the channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def activations(shape, dtype=np.float64, seed=0, constant_channel=True):
    """A batch with per-channel mean in [-4, 6) and std in [0.5, 3)."""
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


def case_seeds(seed, hidden):
    """Seeds for the cases of one check; hidden tests use other seeds."""
    base = 1000 + seed if hidden else seed
    return [base + 7 * i for i in range(len(shapes(hidden)))]
