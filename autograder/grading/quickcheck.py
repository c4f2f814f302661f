"""A fast, in-process preview of what the autograder will say (a development aid).

    python -m autograder.grading.quickcheck solutions/01_four_steps/01_four_steps_numpy.ipynb

runs the solution notebook and each planted bug of its corpus in a fresh
IPython shell (no nbgrader, no new kernel) and prints which test cells fail
and whether the expected diagnosis appears. The real proof is the test suite,
which grades the same notebooks with the nbgrader CLI.
"""

import contextlib
import io
import sys
from pathlib import Path

import nbformat

from .mutants import corpus
from .pipeline import grade_id, solution_code


def run_cells(notebook, answers):
    """Run every code cell (answers substituted); return {grade_id: error text} of failing test cells."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    failures = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        source = solution_code(answers.get(grade_id(cell), cell.source))
        errors = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
            result = shell.run_cell(source, silent=True)
        if cell.metadata.get("nbgrader", {}).get("grade"):
            if not result.success:
                error = result.error_in_exec or result.error_before_exec
                failures[grade_id(cell)] = f"{type(error).__name__}: {error}"
            elif errors.getvalue().strip():  # nbgrader gives 0 to a test cell that writes to stderr
                failures[grade_id(cell)] = f"stderr: {errors.getvalue().strip()[:300]}"
    return failures


def main(path):
    notebook = nbformat.read(path, as_version=4)
    answers = {grade_id(c): c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")}
    failures = run_cells(notebook, answers)
    print(f"solution: {'all tests pass' if not failures else failures}")
    status = 1 if failures else 0
    for mutant in corpus(Path(path).stem):
        planted = dict(answers)
        for cell, old, new in mutant.replacements:
            if old not in planted[cell]:
                print(f"{mutant.name}: cannot plant, {old!r} not in cell {cell}")
                status = 1
                continue
            planted[cell] = planted[cell].replace(old, new)
        failures = run_cells(notebook, planted)
        if mutant.diagnosis is None:  # a correct variant
            verdict = "ok" if not failures else "PROBLEM"
            status |= verdict != "ok"
            print(f"{verdict:7s} {mutant.name:36s} (correct variant) fails {sorted(failures)}")
            continue
        expected = mutant.expected_text(Path(path).stem)
        diagnosed = any(" ".join(expected.split()) in " ".join(text.split()) for text in failures.values())
        cells_ok = set(mutant.loses) <= set(failures) and not set(mutant.keeps) & set(failures)
        verdict = "ok" if failures and diagnosed and cells_ok else "PROBLEM"
        status |= verdict != "ok"
        print(f"{verdict:7s} {mutant.name:36s} fails {sorted(failures)}; diagnosis {'found' if diagnosed else 'MISSING'}"
              + ("" if cells_ok else f"; must lose {list(mutant.loses)}, keep {list(mutant.keeps)}"))
        if verdict != "ok":
            for cell, text in failures.items():
                print(f"          {cell}: {text[:300]}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
