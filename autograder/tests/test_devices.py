"""The PyTorch checks on every device: the solutions keep full marks and the planted bugs lose theirs, on the CPU and,
where there is one, on CUDA (the notebooks run on ``cuda`` when it is available; these tests are skipped without).

In-process: the solution cells (:mod:`autograder.grading.solved`, a planted bug's replacements applied) run in this
process and the test cells' checks are called on their functions with ``device``, as the notebooks' test cells call
them. With CUDA the Triton kernels are compiled for the GPU; without, they run in Triton's interpreter.
"""

import os

import nbformat
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from autograder import four_steps_torch, four_steps_triton  # noqa: E402
from autograder.grading.mutants import corpus  # noqa: E402
from autograder.grading.pipeline import SOLUTIONS, grade_id  # noqa: E402
from autograder.grading.quickcheck import run_cells  # noqa: E402
from autograder.grading.solved import CELLS, solved  # noqa: E402

DEVICES = [pytest.param("cpu"),
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]

# Each notebook's test cells (grade_id: the check the cell calls, on the solution's names).
TEST_CELLS = {
    "01_four_steps_torch": {
        "test_structure": lambda ns, device: four_steps_torch.check_structure(ns["BatchNormFunction"],
                                                                              ns["batch_norm"], device),
        "test_forward": lambda ns, device: four_steps_torch.check_forward(ns["batch_norm"], device),
        "test_backward_params": lambda ns, device: four_steps_torch.check_dgamma_dbeta(ns["batch_norm"], device),
        "test_backward_dx": lambda ns, device: four_steps_torch.check_dx(ns["batch_norm"], device),
        "test_gradcheck": lambda ns, device: four_steps_torch.check_gradcheck(ns["batch_norm"], device),
    },
    "01_four_steps_triton": {
        "test_structure": lambda ns, device: four_steps_triton.check_structure(ns["TritonBatchNormFunction"],
                                                                               ns["batch_norm_triton"], device),
        "test_forward": lambda ns, device: four_steps_triton.check_forward(ns["batch_norm_triton"], device),
        "test_backward_params": lambda ns, device: four_steps_triton.check_dgamma_dbeta(ns["batch_norm_triton"],
                                                                                        device),
        "test_backward_dx": lambda ns, device: four_steps_triton.check_dx(ns["batch_norm_triton"], device),
    },
}


def failing_cells(stem, device, replacements=()):
    """{grade_id: message} of the test cells whose check fails on the solution (with ``replacements`` planted)."""
    namespace = solved(stem, {"torch": torch, "triton": triton, "tl": tl}, replacements)
    failures = {}
    for cell, check in TEST_CELLS[stem].items():
        try:
            check(namespace, torch.device(device))
        except AssertionError as failure:
            failures[cell] = str(failure)
    return failures


def planted_bugs(stem):
    """The corpus's bugs that live in the cells :func:`solved` runs: not the quiz's, not a cheat that replaces the
    notebook's ``checks`` (which only a notebook has)."""
    return [m for m in corpus(stem) if m.diagnosis is not None
            and all(cell in CELLS[stem] and "checks" not in new for cell, _old, new in m.replacements)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stem", sorted(TEST_CELLS))
def test_solution_passes_every_check_on_the_device(stem, device):
    assert failing_cells(stem, device) == {}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stem", sorted(TEST_CELLS))
def test_planted_bugs_fail_their_checks_on_the_device(stem, device):
    bugs = planted_bugs(stem)
    assert len(bugs) >= 6, f"too few planted bugs for {stem}: {[m.name for m in bugs]}"
    for mutant in bugs:
        failures = failing_cells(stem, device, mutant.replacements)
        assert failures, f"{mutant.name} passes every check on {device}"
        assert set(mutant.loses) <= set(failures), f"{mutant.name} on {device} fails only {sorted(failures)}"
        assert not set(mutant.keeps) & set(failures), f"{mutant.name} on {device} fails {sorted(failures)}"
        assert mutant.expected_text(stem) in " ".join(" ".join(f.split()) for f in failures.values()), (
            f"{mutant.name} on {device}: no message names {mutant.expected_text(stem)!r}")


# The other PyTorch notebooks, whole: their solution run in an IPython shell (quickcheck's), with ``device`` set to
# the device under test right after the setup cell, every test cell (visible and hidden parts) must pass there.
OTHER_TORCH_NOTEBOOKS = sorted(p for p in SOLUTIONS.glob("*/*_torch.ipynb") if p.stem not in TEST_CELLS)


def on_device(notebook, device):
    """``notebook`` with a cell after its setup cell that sets ``device``."""
    position = next(i for i, cell in enumerate(notebook.cells) if grade_id(cell) == "setup") + 1
    changed = nbformat.v4.new_notebook(metadata=notebook.metadata)
    changed.cells = [*notebook.cells[:position], nbformat.v4.new_code_cell(f"device = torch.device({device!r})"),
                     *notebook.cells[position:]]
    return changed


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", OTHER_TORCH_NOTEBOOKS, ids=lambda path: path.stem)
def test_every_test_cell_of_the_solution_passes_on_the_device(path, device):
    notebook = nbformat.read(path, as_version=4)
    answers = {grade_id(c): c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")}
    assert run_cells(on_device(notebook, device), answers) == {}


@pytest.mark.parametrize("path", OTHER_TORCH_NOTEBOOKS, ids=lambda path: path.stem)
def test_the_device_set_is_the_device_the_checks_use(path):
    """Control: on the ``meta`` device (no values) the same solution fails its checks, so ``device`` took effect."""
    notebook = nbformat.read(path, as_version=4)
    answers = {grade_id(c): c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")}
    assert run_cells(on_device(notebook, "meta"), answers)
