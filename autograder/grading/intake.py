"""What ``nbgrader autograde`` reads: graded cells put back as released, unreadable notebooks flagged.

Stock nbgrader stops at a submitted notebook it cannot read or validate: truncated JSON, a file that is not a
notebook, a duplicated or renamed test cell, or a test cell turned into markdown drops that student ("There was an
error processing assignment"), and a notebook whose nbgrader metadata says an old schema (an nbformat 3 notebook,
or one cell edited) raises ``SchemaTooOldError``, which ends the whole run, every later student ungraded.
:func:`install` wraps ``Autograde.convert_single_notebook``, for grading only (the submitted file is never
changed):

* :func:`repaired`: a cell that claims a grade id the release does not have, a second cell with a grade id, or a
  cell whose type differs from the release's loses its nbgrader metadata (it becomes one of the student's own
  cells); nbgrader then puts the missing test cells back from the gradebook (``OverwriteCells.add_missing_cells``),
  with their source, type and points as released.
* A notebook that still fails nbformat's or nbgrader's validation, or whose sanitizing fails, is replaced by the
  release notebook with a first cell that says why (``INVALID NOTEBOOK``): it scores 0, the gradebook records it,
  the feedback explains it, and the run goes on.
"""

import json
from pathlib import Path

import nbformat

FLAG = "INVALID NOTEBOOK"
MAX_BYTES = 64 << 20  # larger than any notebook of the course could be


def read_submission(path, released):
    """(the notebook at ``path`` repaired against ``released``, None) or (None, why it cannot be graded).

    ``released`` maps the release's grade ids to their cell types.
    """
    from nbgrader.nbgraderformat import MetadataValidator
    try:
        if Path(path).stat().st_size > MAX_BYTES:
            return None, f"the file is larger than {MAX_BYTES >> 20} MiB"
        text = Path(path).read_text(encoding="utf-8")
        version = json.loads(text).get("nbformat") if text.lstrip().startswith("{") else None
        if version != 4:
            return None, f"not an nbformat 4 notebook (nbformat: {version!r})" if version else "not a notebook"
        notebook = repaired(nbformat.reads(text, as_version=4), released)
        nbformat.validate(notebook)
        MetadataValidator().validate_nb(notebook)
    except Exception as error:  # noqa: BLE001 every way a file can fail to be a gradable notebook
        return None, described(error)
    return notebook, None


def repaired(notebook, released):
    """``notebook`` without nbgrader metadata on cells that do not match the release; unique cell ids."""
    seen_grade_ids, seen_ids = set(), set()
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is not None:
            grade_id = meta.get("grade_id")
            if grade_id not in released or grade_id in seen_grade_ids or released[grade_id] != cell.cell_type:
                del cell.metadata["nbgrader"]
                cell.metadata.pop("deletable", None)
                cell.metadata.pop("editable", None)
            else:
                seen_grade_ids.add(grade_id)
        if cell.get("id") in seen_ids:
            cell.id = f"{cell.id}-{len(seen_ids)}"[:64]
        seen_ids.add(cell.get("id"))
    return notebook


def described(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300]}" if text else type(error).__name__


def released_cells(db_url, notebook_id, assignment_id):
    """grade_id -> cell type of the release's cells, from the gradebook."""
    from nbgrader.api import Gradebook
    with Gradebook(db_url) as gradebook:
        return {cell.name: cell.cell_type
                for cell in gradebook.find_notebook(notebook_id, assignment_id).source_cells}


def placeholder(release_path, problem):
    """The release notebook, headed by a cell that flags the submission as invalid."""
    notebook = nbformat.read(release_path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"**{FLAG}**: the notebook you handed in could not be read or validated ({problem}). It was graded as "
        "the unanswered exercise, 0 points. Open it in Jupyter to see what is wrong, or ask your instructor."))
    return notebook


def install():
    """Make ``Autograde`` grade an unreadable or invalid submission as its flagged placeholder."""
    from nbgrader.converters.autograde import Autograde
    if getattr(Autograde.convert_single_notebook, "guards_invalid_notebooks", False):
        return
    original = Autograde.convert_single_notebook

    def convert_single_notebook(self, notebook_filename):
        info = self.init_single_notebook_resources(notebook_filename)["nbgrader"]
        substitute, problem = read_submission(
            notebook_filename, released_cells(self.coursedir.db_url, info["notebook"], info["assignment"]))
        if substitute is not None:
            try:
                return converted(self, notebook_filename, substitute)
            except Exception as error:  # noqa: BLE001 sanitizing failed on what validated
                if "Sandbox" in type(error).__name__:
                    raise
                problem = described(error)
        self.log.warning("%s %s: %s", FLAG, notebook_filename, problem)
        release = Path(self.coursedir.format_path(self.coursedir.release_directory, ".", info["assignment"]))
        return converted(self, notebook_filename, placeholder(release / Path(notebook_filename).name, problem))

    def converted(converter, notebook_filename, substitute):
        """Run nbgrader's conversion with ``substitute`` read in place of the submitted file."""
        exporter = converter.exporter
        read_file = exporter.from_filename

        def from_filename(filename, resources=None, **kw):
            if filename == notebook_filename:
                return exporter.from_notebook_node(substitute, resources=resources, **kw)
            return read_file(filename, resources=resources, **kw)

        exporter.from_filename = from_filename
        try:
            return original(converter, notebook_filename)
        finally:
            del exporter.from_filename

    convert_single_notebook.guards_invalid_notebooks = True
    Autograde.convert_single_notebook = convert_single_notebook
