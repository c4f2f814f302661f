"""The solution notebooks' reference code, run as a module: what the benchmark (``bench/``) and the book time.

Instructor tooling like the rest of :mod:`autograder.grading` (never shipped to students); a page that times a
solution runs it in a cell whose input the book does not show, so no solution line reaches the HTML.
"""

import linecache

import nbformat

from .pipeline import SOLUTIONS, grade_id, solution_code

# The solution cells that define each notebook's implementation, in order.
CELLS = {
    "01_four_steps_numpy": ("batch_mean", "batch_var", "normalize", "scale_shift", "bn_forward", "bn_backward"),
    "01_four_steps_torch": ("batch_norm_function", "batch_norm"),
    "01_four_steps_triton": ("offsets", "forward_kernels", "backward_kernels", "triton_function", "batch_norm_triton"),
}


def solved(stem, namespace, replacements=()):
    """Run the solution cells of ``solutions/<NN_slug>/<stem>.ipynb`` in ``namespace`` and return it.

    ``replacements`` (``(grade_id, old, new)``, a planted bug's) change the cells' code first.

    ``namespace`` holds what the notebook's setup cell would have imported (``np``; ``torch``; ``triton`` and
    ``tl``, imported after ``TRITON_INTERPRET`` was chosen). Each cell's source is registered with ``linecache``,
    as IPython does, because ``triton.jit`` reads the source of the functions it compiles.
    """
    assignment = stem.rsplit("_", 1)[0]
    notebook = nbformat.read(SOLUTIONS / assignment / f"{stem}.ipynb", as_version=4)
    sources = {grade_id(cell): cell.source for cell in notebook.cells}
    for cell, old, new in replacements:
        if old not in sources[cell]:
            raise ValueError(f"cannot plant the bug: {old!r} is not in solution cell {cell!r}")
        sources[cell] = sources[cell].replace(old, new)
    for cell in CELLS[stem]:
        source = solution_code(sources[cell])
        filename = f"<{stem}:{cell}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 the course's own solution code
    return namespace
