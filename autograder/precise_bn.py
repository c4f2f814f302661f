"""Checks for Chapter 2, PyTorch, part two: precise BN, re-estimating every layer's running statistics.

``recompute_bn_stats(model, batches)`` runs in small models that hold torch's
batch-norm layers and (in some plans) the student's own ``BatchNorm``; its
statistics must equal the cumulative averages torch's layers reach over the
same batches, and everything else in the model must be as it was.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import cases
from .compare import CheckFailure, assert_close, describe_case
from .mistakes import sentence
from .student import graded
from .introspect import is_instance
from .tensors import assign, cpu64, nn_beside
from .train_vs_eval_torch import STATISTICS, batch_moments, construct, run_student, \
    set_affine, statistics_of

@dataclass(frozen=True)
class Plan:
    """A model for recompute_bn_stats: its kind, whether it holds the student's layer, its mode, the batches."""
    kind: str
    with_student_layer: bool
    training: bool
    batch_sizes: tuple
    as_generator: bool = False


@dataclass(frozen=True)
class Inputs:
    """The models recompute_bn_stats is tried on."""

    seed: int = 0
    plans: tuple = (Plan("mlp", False, False, (16, 7, 12, 5)), Plan("mlp", True, True, (9, 14, 6)))
    untracked_layer: bool = False  # add a layer without running statistics, which must be left alone


VISIBLE = Inputs()


def _layers(kind, bn_factory, untracked, nn=nn):
    """The layers of a small model, made by ``nn`` (torch.nn here, or in the student's kernel); the last batch
    norm comes from ``bn_factory``."""
    __tracebackhide__ = True
    if kind == "mlp":
        layers = [nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5), bn_factory(5, 0.3)]
    else:
        layers = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.2), nn.ReLU(),
                  nn.Conv2d(4, 3, 3), bn_factory(3, 0.05)]
    if untracked:  # a layer without running statistics, which must be left alone
        layers.insert(2, nn.BatchNorm1d(8, track_running_stats=False) if kind == "mlp"
                      else nn.BatchNorm2d(4, track_running_stats=False))
    return layers


def _is_batch_norm(module, BatchNorm):
    __tracebackhide__ = True
    return is_instance(module, nn.modules.batchnorm._BatchNorm, BatchNorm)


def _twin_models(plan, BatchNorm, device, seed, untracked):
    """(model for the student's function, reference model with torch's layers only), equal weights."""
    __tracebackhide__ = True
    def student_bn(channels, momentum):
        __tracebackhide__ = True
        module, _ = construct(BatchNorm, channels, {"momentum": momentum}, torch.float64, device, {"model": plan.kind})
        return module

    def torch_bn(channels, momentum, nn=nn):
        __tracebackhide__ = True
        return (nn.BatchNorm1d if plan.kind == "mlp" else nn.BatchNorm2d)(channels, momentum=momentum)

    torch.manual_seed(seed)
    reference = nn.Sequential(*_layers(plan.kind, torch_bn, untracked)).to(device, torch.float64)
    beside = nn_beside(BatchNorm)  # the model is the student's function's argument: built where it runs
    layers = _layers(plan.kind, student_bn if plan.with_student_layer else
                     (lambda channels, momentum: torch_bn(channels, momentum, beside)), untracked, beside)
    model = beside.Sequential(*layers).to(device, torch.float64)
    rng = np.random.default_rng(seed)
    for ours, theirs in zip(reference, model):
        if _is_batch_norm(ours, BatchNorm) and ours.affine:
            gamma, beta = cases.affine_parameters(ours.num_features, np.float64, int(rng.integers(1000)))
            set_affine(ours, gamma, beta, "torch's BatchNorm")
            set_affine(theirs, gamma, beta, "your BatchNorm")
        elif not _is_batch_norm(theirs, BatchNorm):
            theirs.load_state_dict(ours.state_dict())
        if _is_batch_norm(theirs, BatchNorm) and theirs.track_running_stats:
            _make_stale(theirs, rng)
    return model, reference


def _make_stale(layer, rng):
    """Statistics from 'earlier training': far from this data, with a non-zero count."""
    __tracebackhide__ = True
    assign(layer, "running_mean", rng.uniform(-3, 3, layer.num_features))
    assign(layer, "running_var", rng.uniform(0.2, 4, layer.num_features))
    assign(layer, "num_batches_tracked", int(rng.integers(5, 50)))


def _plan_batches(plan, device, seed):
    __tracebackhide__ = True
    rng = np.random.default_rng(seed + 77)
    shape = (6,) if plan.kind == "mlp" else (3, 6, 6)
    return [torch.tensor(1.5 + 2.0 * rng.standard_normal((n,) + shape), device=device) for n in plan.batch_sizes]


def _expected_statistics(reference, batches):
    """Per layer, the cumulative averages over ``batches`` of its inputs' batch mean and unbiased variance."""
    __tracebackhide__ = True
    inputs = {index: [] for index, layer in enumerate(reference) if getattr(layer, "track_running_stats", False)}
    hooks = [reference[index].register_forward_pre_hook(lambda _m, args, index=index: inputs[index].append(args[0]))
             for index in inputs]
    reference.train()
    with torch.no_grad():
        for batch in batches:
            reference(batch)
    for hook in hooks:
        hook.remove()
    expected = {}
    for index, seen in inputs.items():
        moments = [batch_moments(cpu64(x)) for x in seen]
        expected[index] = {"running_mean": torch.stack([m[0] for m in moments]).mean(0),
                           "running_var": torch.stack([m[2] for m in moments]).mean(0),
                           "num_batches_tracked": len(seen), "moments": moments}
    return expected


@graded
def check_recompute_bn_stats(recompute_bn_stats, BatchNorm, device, inputs=VISIBLE):
    """recompute_bn_stats re-estimates every BN layer's statistics as a cumulative average, and restores the rest."""
    __tracebackhide__ = True
    for number, plan in enumerate(inputs.plans):
        plan_seed = inputs.seed + 31 * number
        model, reference = _twin_models(plan, BatchNorm, device, plan_seed, untracked=inputs.untracked_layer)
        model.train(plan.training)
        batches = _plan_batches(plan, device, plan_seed)
        case = {"model": plan.kind + (" with your BatchNorm as its last layer" if plan.with_student_layer else ""),
                "batch sizes": plan.batch_sizes, "model mode": "train" if plan.training else "eval",
                "seed": plan_seed}
        before = _model_state(model, BatchNorm)
        argument = iter(list(batches)) if plan.as_generator else list(batches)
        result = run_student("recompute_bn_stats(model, batches)", lambda: recompute_bn_stats(model, argument), case,
                      "batches is an iterable of input tensors: loop over it once, calling model(batch)")
        if result is not model:
            raise CheckFailure(f"recompute_bn_stats must return the model it was given; it returned "
                               f"{type(result).__name__}\n  input: {describe_case(case)}")
        expected = _expected_statistics(reference, batches)
        _compare_recomputed(model, before, expected, BatchNorm, case)
        _assert_restored(model, before, BatchNorm, case)


def _model_state(model, BatchNorm):
    """What recompute_bn_stats must leave as it found it, and the stale statistics (for diagnoses)."""
    __tracebackhide__ = True
    return {"training": [m.training for m in model.modules()],
            "momentum": {i: layer.momentum for i, layer in enumerate(model) if _is_batch_norm(layer, BatchNorm)},
            "parameters": {n: p.detach().clone() for n, p in _trained_parameters(model)},
            "statistics": {i: statistics_of(layer) for i, layer in enumerate(model)
                           if _is_batch_norm(layer, BatchNorm) and layer.track_running_stats}}


def _trained_parameters(model):
    """The model's parameters, without statistics registered as parameters (the buffers check grades that)."""
    __tracebackhide__ = True
    return [(n, p) for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] not in STATISTICS]


def _layer_name(layer, index, BatchNorm):
    __tracebackhide__ = True
    own = not is_instance(layer, nn.modules.batchnorm._BatchNorm)
    return f"layer {index} ({'your BatchNorm' if own else type(layer).__name__})"


def _compare_recomputed(model, before, expected, BatchNorm, case):
    """torch's layers hold the cumulative averages; the student's own layer was found and re-estimated.

    The values in the student's own layer depend on its running-statistics
    update, which the running-statistics check grades; here it only has to
    have been reset and fed every batch once (its count says so).
    """
    __tracebackhide__ = True
    for index, values in expected.items():
        layer = model[index]
        label = _layer_name(layer, index, BatchNorm)
        if not is_instance(layer, nn.modules.batchnorm._BatchNorm):
            _assert_re_estimated(layer, before["statistics"][index], values["num_batches_tracked"], label, case)
            continue
        mistakes = _recompute_mistakes(before["statistics"][index], values["moments"], before["momentum"][index])
        hint = ("precise BN: reset the statistics, set momentum=None (a cumulative average), model.train(), "
                "one forward pass per batch under torch.no_grad()")
        for statistic in STATISTICS:
            assert_close(f"{statistic} of {label} after recompute_bn_stats", getattr(layer, statistic),
                         values[statistic], dtype=np.float64, case=case, mistakes=mistakes[statistic], api="torch",
                         hint=hint)
        count = statistics_of(layer)["num_batches_tracked"]
        if count != values["num_batches_tracked"]:
            raise CheckFailure(
                f"num_batches_tracked of {label} after recompute_bn_stats is {count}, expected "
                f"{values['num_batches_tracked']} (one per batch)\n  input: {describe_case(case)}\n"
                f"  likely cause: {sentence('precise_not_reset', 'torch')}"
            )


def _assert_re_estimated(layer, stale, expected_count, label, case):
    """The student's own layer was reset and passed every batch: it counts exactly the batches of this run."""
    __tracebackhide__ = True
    count = statistics_of(layer)["num_batches_tracked"]
    if count == expected_count:
        return
    skipped = count == stale["num_batches_tracked"] + expected_count or all(
        torch.equal(statistics_of(layer)[statistic], stale[statistic]) for statistic in STATISTICS)
    raise CheckFailure(
        f"num_batches_tracked of {label} after recompute_bn_stats is {count}, expected {expected_count} (its "
        f"statistics reset, then one count per batch; it was {stale['num_batches_tracked']} before)\n"
        f"  input: {describe_case(case)}\n"
        + (f"  likely cause: {sentence('precise_skipped_own_layer', 'torch')}" if skipped else
           "  hint: reset every batch-norm layer of the model, yours included, then run each batch once"))


RESET = {"running_mean": 0.0, "running_var": 1.0}


def _recompute_mistakes(stale, moments, momentum):
    """Statistics that the classic precise-BN mistakes leave in one of torch's layers, by statistic."""
    __tracebackhide__ = True
    exponential = 0.1 if momentum is None else momentum
    mistakes = {}
    for statistic, position in (("running_mean", 0), ("running_var", 2)):
        values = [m[position] for m in moments]
        old = stale[statistic]
        reset = torch.full_like(old, RESET[statistic])
        mistakes[statistic] = {
            "precise_unchanged": lambda old=old: old,
            "precise_not_in_training_mode": lambda reset=reset: reset,
            "precise_exponential_average/from_old": lambda old=old, values=values: _exponential(old, values, exponential),
            "precise_exponential_average/from_reset":
                lambda reset=reset, values=values: _exponential(reset, values, exponential),
            "precise_not_reset": lambda old=old, values=values: _cumulative(old, values, stale["num_batches_tracked"]),
            "precise_last_batch_only": lambda values=values: values[-1],
        }
    return mistakes


def _exponential(start, values, momentum):
    __tracebackhide__ = True
    running = start.clone()
    for value in values:
        running = (1 - momentum) * running + momentum * value
    return running


def _cumulative(start, values, count):
    __tracebackhide__ = True
    running = start.clone()
    for value in values:
        count += 1
        running = running + (value - running) / count
    return running


def _assert_restored(model, before, BatchNorm, case):
    """Momentum, training flags and parameters are what they were before recompute_bn_stats."""
    __tracebackhide__ = True
    for index, momentum in before["momentum"].items():
        if model[index].momentum != momentum:
            raise CheckFailure(
                f"the momentum of {_layer_name(model[index], index, BatchNorm)} is {model[index].momentum!r} after "
                f"recompute_bn_stats, it was {momentum!r}\n  input: {describe_case(case)}\n"
                f"  likely cause: {sentence('momentum_not_restored', 'torch')}"
            )
    modes = [m.training for m in model.modules()]
    if modes != before["training"]:
        was = "train" if before["training"][0] else "eval"
        raise CheckFailure(
            f"the model is not in its original mode after recompute_bn_stats (it was in {was} mode)\n"
            f"  input: {describe_case(case)}\n"
            f"  likely cause: {sentence('mode_not_restored', 'torch')}"
        )
    for parameter_name, parameter in _trained_parameters(model):
        if not torch.equal(parameter.detach(), before["parameters"][parameter_name]):
            raise CheckFailure(
                f"parameter {parameter_name} changed during recompute_bn_stats\n  input: {describe_case(case)}\n"
                "  hint: precise BN only re-estimates the running statistics; run the forward passes under "
                "torch.no_grad() and take no optimizer step"
            )
