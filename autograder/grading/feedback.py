"""Returned feedback without the hidden tests: an nbgrader preprocessor for ``generate_feedback``.

``nbgrader autograde`` puts the instructor's test cells back into every
submission, hidden tests included, and ``nbgrader generate_feedback`` turns
that notebook into the HTML a student gets back. Stock nbgrader shows each test
cell whole, so the feedback would carry the hidden inputs and the quiz answers
(``check_choice("q1", answer_q1, correct="b")``), and IPython's tracebacks
quote the lines around a failing one, hidden lines too.

:class:`HideHiddenTests` runs in ``generate_feedback`` (``nbgrader_config.py``
lists it in ``c.GenerateFeedback.preprocessors``). It

- removes every region between the hidden-test delimiters from every cell's
  source, the way ``generate_assignment`` does for the release;
- removes from every error output's traceback, and from stderr, each line that
  quotes hidden-test code (a line of a hidden region that the notebook does not
  also show outside one), leaving one notice where lines were left out.

The error's name and message, the student's own frames and the check's failure
message (written for students) stay, and so do the grades that ``GetGrades``
puts in: a student still sees each verdict and why.
"""

import re

from nbgrader.preprocessors import ClearHiddenTests
from traitlets import Unicode

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# IPython quotes a source line as "----> 6 code" or "      5 code";
# Python's own traceback indents it under "  File ..., line 6".
LINE_NUMBER_PREFIX = re.compile(r"^\s*(?:-*>)?\s*\d+(?: |$)")
CARETS = re.compile(r"^\s*[\^~]+\s*$")


def strip_ansi(text):
    """``text`` without terminal colour codes."""
    return ANSI_ESCAPE.sub("", text)


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden tests from the sources and the tracebacks of an autograded notebook.

    The delimiters are ``ClearHiddenTests``'s (configure them there, and
    ``generate_assignment`` and the feedback agree). Unlike in
    ``generate_assignment``, a hidden region outside a grade cell is removed
    rather than refused: feedback must not fail on a notebook the autograder took.
    """

    notice = Unicode(
        "      (hidden test code not shown)",
        help="The line that stands in a traceback for lines of hidden test code left out",
    ).tag(config=True)

    def split_hidden(self, source):
        """(visible lines, hidden lines) of a cell's source; the delimiter lines count as hidden."""
        visible, hidden, inside = [], [], False
        for line in source.split("\n"):
            if self.begin_test_delimeter in line:
                inside = True
                hidden.append(line)
            elif self.end_test_delimeter in line:
                inside = False
                hidden.append(line)
            else:
                (hidden if inside else visible).append(line)
        return visible, hidden

    def preprocess(self, nb, resources):
        shown, hidden = set(), set()
        for cell in nb.cells:
            visible_lines, hidden_lines = self.split_hidden(cell.source)
            shown.update(line.strip() for line in visible_lines)
            hidden.update(line.strip() for line in hidden_lines)
        # A line the notebook also shows outside a hidden region (the student's
        # own code, a setup import, a lone bracket) gives nothing away.
        self.secret = {line for line in hidden - shown if line}
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        self._remove_hidden_test_region(cell)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [self.clean(entry) for entry in output.get("traceback", [])]
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                output["text"] = self.clean(output.get("text", ""))
        return cell, resources

    def quotes_hidden_code(self, line):
        """Whether one line of a traceback quotes hidden-test code."""
        plain = strip_ansi(line)
        if self.begin_test_delimeter in plain or self.end_test_delimeter in plain:
            return True
        candidates = {plain.strip(), LINE_NUMBER_PREFIX.sub("", plain, count=1).strip()}
        return any(candidate in self.secret for candidate in candidates)

    def clean(self, text):
        """``text`` (one traceback entry, or stderr) without the lines that quote hidden code."""
        kept, dropping = [], False
        for line in text.split("\n"):
            if self.quotes_hidden_code(line) or (dropping and CARETS.match(strip_ansi(line))):
                if not dropping:
                    kept.append(self.notice)
                dropping = True
            else:
                kept.append(line)
                dropping = False
        return "\n".join(kept)
