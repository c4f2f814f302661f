"""The hidden tests' inputs: other seeds and shapes, and the cases a student could otherwise hard-code around.

A hidden test cell calls the same check as its visible part, with these inputs::

    from autograder.grading.hidden import hidden_inputs
    checks.check_batch_mean(batch_mean, hidden_inputs("four_steps"))

Test cells run in the grader's trusted process (:mod:`autograder.grading.trusted`), where ``checks`` is the
name the notebook's setup cell bound there, to the grader's own check library: code in the student's kernel cannot
reach it, so nothing needs re-importing. None of this ships to students: the package they install leaves
``autograder.grading`` out.
"""

import importlib
import os
import secrets

# The hidden inputs' seed in a student's kernel and in this repository's tests. Where the test cells run in the
# grader's trusted process, it is the course's secret instead (use_course_seed).
SEED = 1003
SEED_FILE = "hidden_seed"  # in the course root, which the students' kernels never see
EPS = 1e-5


def course_seed(root):
    """The course's secret seed, from ``<root>/hidden_seed``; made (63 random bits, root-only) the first time.

    One seed per course: regrading gives the same verdicts, and no student can know the hidden inputs ahead.
    """
    path = os.path.join(root, SEED_FILE)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(f"{secrets.randbits(63)}\n")
    with open(path) as file:
        return int(file.read().strip())


def use_course_seed(root):
    """Draw the hidden inputs from the course's secret seed (in the grader's trusted process only)."""
    global SEED
    SEED = course_seed(root)


def hidden_inputs(module_name):
    """The hidden inputs of the checks in ``autograder.<module_name>`` (an instance of its ``Inputs``)."""
    return INPUTS[module_name](importlib.import_module(f"autograder.{module_name}"))


# A volume, a single channel, a tiny batch, a batch of one image, many channels.
SHAPES = ((5, 3, 2, 3, 4), (9, 1), (2, 6), (1, 5, 3, 7), (31, 17))


def _four_steps(checks):
    return checks.Inputs(seed=SEED, shapes=SHAPES, numeric_shapes=((4, 2, 3), (6, 4)))


def _four_steps_torch(checks):
    return checks.Inputs(seed=SEED, shapes=SHAPES, custom_eps=0.1, structure_shape=(5, 3), backward_custom_eps=True,
                         gradcheck_cases=(((5, 2), 1e-3), ((2, 3, 2, 2), EPS)))


# For the Triton kernels (float32, interpreted without a GPU: small): m = 45, 9, 31, 130 and 99 values per channel,
# none a multiple of 4, so that the last block is partial; a single channel, a batch of one image.
TRITON_SHAPES = ((5, 3, 3, 3), (9, 1), (31, 5), (2, 3, 13, 5), (1, 4, 9, 11))


def _four_steps_triton(checks):
    return checks.Inputs(seed=SEED, shapes=TRITON_SHAPES, custom_eps=0.1, structure_shape=(9, 2),
                         backward_custom_eps=True, large_means=(((33, 3, 3), -1e4),))


def _train_vs_eval(checks):
    config = checks.LayerOptions
    return checks.Inputs(
        seed=SEED,
        # (N, C, L) and volumes, a single channel, tiny batches and many channels.
        protocols=(
            (("train", (3, 5, 4)), ("train", (2, 5, 7)), ("train", (11, 5, 1)), ("eval", (4, 5, 3)),
             ("eval", (1, 5, 1)), ("train", (6, 5, 2)), ("eval", (2, 5, 9))),
            (("train", (2, 2, 2, 3, 2)), ("train", (3, 2, 1, 2, 2)), ("eval", (1, 2, 2, 2, 2)),
             ("train", (2, 2, 3, 1, 2)), ("eval", (2, 2, 1, 1, 1))),
            (("train", (2, 1)), ("train", (3, 1)), ("eval", (1, 1)), ("train", (31, 1)), ("eval", (4, 1))),
            (("train", (31, 17)), ("train", (9, 17)), ("eval", (2, 17)), ("train", (16, 17)), ("eval", (1, 17))),
        ),
        init_channels=(5, 17),
        forward_options=(config(), config(eps=1e-3)),
        momentum_options=(config(momentum=0.05), config(momentum=None), config(momentum=0.5, eps=1e-3),
                          config(momentum=0.7, eps=1e-2), config(momentum=None, affine=False)),
        moving_average=(((5, 4, 2, 2), 0.05), ((3, 2), 0.5), ((2, 3, 2, 2, 2), None)),
        other_options=(config(affine=False), config(track_running_stats=False),
                       config(affine=False, track_running_stats=False, momentum=None),
                       config(track_running_stats=False, eps=1e-3)),
        one_value_shapes=((1, 2, 1), (1, 5, 1, 1, 1), (1, 1)),
        one_value_in_eval_without_tracking=True,
        small_batches=(("train", (2, 1)), ("eval", (1, 4, 1, 1)), ("train", (1, 2, 1, 2, 1))),
        backward_eval_options=(config(), config(momentum=None, eps=1e-3)),
    )


def _train_vs_eval_torch(checks):
    scenario = checks.Scenario
    return checks.Inputs(
        seed=SEED,
        # Volumes, a training batch of one image, two values per channel, a single channel,
        # momentum 1, other eps, and float32 with momentum=None.
        tracking=(
            scenario(((5, 3, 2, 3, 4), (2, 3, 2, 3, 4), (4, 3, 3, 2, 2)), ((3, 3, 2, 3, 4), (1, 3, 2, 3, 4))),
            scenario(((1, 5, 3, 7), (2, 5, 3, 7), (6, 5, 2, 2)), ((1, 5, 3, 7),), momentum=0.05, eps=1e-3),
            scenario(((31, 17), (9, 17), (2, 17), (40, 17)), ((1, 17), (7, 17)), momentum=None),
            scenario(((9, 1), (12, 1), (3, 1)), ((1, 1),), momentum=1.0),
            scenario(((8, 3, 4, 4), (5, 3, 2, 6), (16, 3, 4, 4)), ((1, 3, 4, 4),), dtype="float32", momentum=None),
            scenario(((16, 6), (10, 6), (12, 6)), ((3, 6),), dtype="float32", momentum=0.2),
        ),
        options=(
            scenario(((5, 3, 2, 3, 4), (3, 3, 2, 3, 4)), ((2, 3, 2, 3, 4), (1, 3, 2, 3, 4)), affine=False,
                     momentum=None),
            scenario(((1, 5, 3, 7), (4, 5, 3, 7)), ((1, 5, 3, 7),), track_running_stats=False, eps=1e-3),
            scenario(((16, 5), (10, 5)), ((8, 5),), affine=False, track_running_stats=False, dtype="float32"),
        ),
        layouts=((1, {}), (17, {"affine": False, "track_running_stats": False}), (2, {"momentum": 0.3}),
                 (5, {"momentum": None, "affine": False})),
        one_value_shapes=((1, 7), (1, 3, 1, 1), (1, 2, 1)),
    )


def _precise_bn(checks):
    plan = checks.Plan
    return checks.Inputs(seed=SEED, untracked_layer=True,
                         plans=(plan("conv", True, False, (4, 2, 5), as_generator=True),
                                plan("mlp", True, False, (3, 11, 8, 20, 2))))


def _placement(checks):
    # A single output unit, a single input, squares (where a wrong axis computes), depthwise-like and 5x1 kernels,
    # deeper and narrower MLPs, a batch of two.
    return checks.Inputs(seed=SEED, linear_shapes=((5, 5), (1, 9), (8, 2), (3, 3)),
                         conv_shapes=((8, 1, 3, 3), (3, 3, 1, 1), (2, 6, 5, 1), (5, 5, 3, 3)), custom_eps=0.1,
                         mlp_sizes=((3, 4, 4, 4, 2), (9, 5, 1)), batch_size=2)


def _placement_torch(checks):
    return checks.Inputs(
        seed=SEED,
        convs=(dict(in_channels=2, out_channels=5, kernel_size=(3, 1), padding=(1, 0), bias=False),
               dict(in_channels=4, out_channels=8, kernel_size=3, stride=(2, 1), groups=4, padding=1),
               dict(in_channels=3, out_channels=3, kernel_size=5, dilation=(1, 2), padding=(2, 4), bias=False)),
        linears=(dict(in_features=1, out_features=4), dict(in_features=6, out_features=6, bias=False)),
        image_size=(6, 11), batch_size=2, eps=0.1)


def _variants(checks):
    case = checks.Case
    # Volumes, a batch of one, 2-D input to group norm, 1 and C groups, tuples of trailing axes,
    # float32 images, other eps and other large means.
    return checks.Inputs(
        seed=SEED,
        layer=(case((2, 3, 2, 3, 4), (2, 3, 4)), case((1, 9), 9, constant=True),
               case((9, 4, 6), (4, 6), dtype="float32", eps=1e-3), case((4, 3, 5), (3, 5), mean=-1e5),
               case((2, 6), (6,), affine=False)),
        group=(case((5, 6), 2), case((1, 4, 3, 3), 4, constant=True), case((2, 6, 2, 2, 3), 1, eps=1e-3),
               case((3, 8, 3, 3), 2, dtype="float32"), case((2, 9, 4), 3, mean=1e5)),
        instance=(case((1, 2, 3, 3)), case((2, 3, 2, 2, 2), constant=True), case((5, 2, 2)),
                  case((2, 2, 4, 4), dtype="float32", eps=1e-3), case((2, 3, 7), mean=-1e5)),
        rms=(case((2, 3, 2, 3, 4), (2, 3, 4)), case((1, 7), 7, constant=True), case((5, 6, 8), (6, 8), dtype="float32"),
             case((4, 3), 3, eps=1e-2), case((3, 2, 6), 6, mean=1e5)),
        one_value_shapes=((3, 4), (2, 2, 1, 1, 1), (1, 1, 1)),
    )


def _variants_torch(checks):
    case = checks.Case
    return checks.Inputs(
        seed=SEED,
        layer=(({"normalized_shape": (2, 3, 4)}, case((2, 5, 2, 3, 4), (2, 3, 4))),
               ({"normalized_shape": [7], "eps": 0.1}, case((1, 7), (7,))),
               ({"normalized_shape": (4, 6), "bias": False, "elementwise_affine": True}, case((5, 4, 6), (4, 6), dtype="float32")),
               ({"normalized_shape": 9, "elementwise_affine": False, "eps": 1e-3}, case((3, 2, 9), 9, affine=False, mean=-1e5))),
        group=(({"num_groups": 3, "num_channels": 9}, case((2, 9), 3)),
               ({"num_groups": 2, "num_channels": 4, "eps": 1e-3}, case((1, 4, 3, 3), 2, constant=True)),
               ({"num_groups": 2, "num_channels": 8, "bias": False}, case((3, 8, 2, 2, 2), 2, dtype="float32")),
               ({"num_groups": 5, "num_channels": 5, "affine": False}, case((2, 5, 6), 5, affine=False, mean=1e5))),
        rms=(({"normalized_shape": (2, 5)}, case((3, 2, 5), (2, 5), constant=True)),
             ({"normalized_shape": [6], "eps": 1e-5}, case((7, 6), (6,), dtype="float32")),
             ({"normalized_shape": 4, "elementwise_affine": False}, case((5, 3, 4), 4, affine=False, dtype="float32")),
             ({"normalized_shape": 3}, case((4, 3), 3, mean=1e5))),
        layer_layouts=({"normalized_shape": [5]}, {"normalized_shape": (2, 2, 2), "elementwise_affine": False},
                       {"normalized_shape": 1, "bias": False, "eps": 0.1}),
        group_layouts=({"num_groups": 4, "num_channels": 8, "bias": False}, {"num_groups": 1, "num_channels": 1},
                       {"num_groups": 5, "num_channels": 5, "affine": False, "eps": 1e-3}),
        group_indivisible=((3, 8), (2, 1)),
        rms_layouts=({"normalized_shape": [3, 2]}, {"normalized_shape": 7, "eps": 1e-5, "elementwise_affine": False}),
        low_precision=(("bfloat16", (5, 128), 100.0), ("float16", (2, 3, 40), 500.0), ("float16", (8, 24), 0.01)),
        # A batch of one on a process, images at a mean of -1e6, float32, a single channel.
        sync=((((1, 4), (7, 4)), "float64", (5.0, -5.0)),
              (((3, 2, 3, 3), (2, 2, 3, 3)), "float64", (-1e6, -1e6 + 1.0)),
              (((16, 3), (4, 3)), "float32", (1.0, 2.0)),
              (((2, 1, 5), (2, 1, 5)), "float64", (0.0, 0.0))),
    )


INPUTS = {
    "four_steps": _four_steps,
    "four_steps_torch": _four_steps_torch,
    "four_steps_triton": _four_steps_triton,
    "train_vs_eval": _train_vs_eval,
    "train_vs_eval_torch": _train_vs_eval_torch,
    "precise_bn": _precise_bn,
    "placement": _placement,
    "placement_torch": _placement_torch,
    "variants": _variants,
    "variants_torch": _variants_torch,
}
