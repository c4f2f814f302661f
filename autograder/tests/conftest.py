"""Shared helpers for the course's test suite."""

import html
import re
from pathlib import Path

import nbformat
import pytest

from autograder.grading.pipeline import BEGIN_SOLUTION, END_SOLUTION, SOLUTIONS, assignments

REPOSITORY = Path(__file__).resolve().parents[2]


def pytest_collection_finish(session):
    """Stop when ``--dist loadgroup`` silently stops grouping (pytest-xdist#1386, seen with pytest 9.2.0).

    Each notebook's nbgrader course and the book are built once per worker that
    runs one of their tests; without grouping both workers build them all.
    """
    if not getattr(session.config.option, "loadgroup", False):
        return
    grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]
    if grouped and not any("@" in item.nodeid for item in grouped):
        raise pytest.UsageError("--dist loadgroup did not group the tests by xdist_group (pytest-xdist#1386); "
                                "requirements.txt pins a pytest with which it does")


def source_notebooks():
    """(assignment, notebook file name) of every solution notebook."""
    return [(a, p.name) for a in assignments() for p in sorted((SOLUTIONS / a).glob("*.ipynb"))]


def read_notebook(path):
    return nbformat.read(path, as_version=4)


def secret_lines(notebook):
    """Distinctive lines of reference solutions and hidden tests: none may reach students.

    A line that the notebook also shows students (the setup cell's imports, an
    error message quoted in the instructions) is not a secret.
    """
    secret, public = set(), []
    for cell in notebook.cells:
        inside = False
        for line in cell.source.split("\n"):
            marker = line.strip()
            if marker in (BEGIN_SOLUTION, "### BEGIN HIDDEN TESTS"):
                inside = True
            elif marker in (END_SOLUTION, "### END HIDDEN TESTS"):
                inside = False
            elif inside:
                if len(marker) >= 25 and not marker.startswith(("#", '"""')):
                    secret.add(marker)
            else:
                public.append(marker)
    public_text = normalized("\n".join(public))
    return {line for line in secret if normalized(line) not in public_text}


def normalized(text):
    """Text as a reader meets it: whitespace collapsed, Markdown code quotes dropped."""
    return " ".join(text.replace("`", "").split())


def visible_text(html_text):
    """The text a reader sees in an HTML page, whitespace collapsed."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html_text, flags=re.S)
    return normalized(html.unescape(re.sub(r"<[^>]+>", " ", text)))


def code_text(html_text):
    """The code blocks of an HTML page as a reader sees them: syntax-highlighting tags joined without spaces."""
    blocks = re.findall(r"<pre[^>]*>(.*?)</pre>", html_text, flags=re.S)
    return "\n".join(normalized(html.unescape(re.sub(r"<[^>]+>", "", block))) for block in blocks)
