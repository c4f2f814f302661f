"""A notebook execution error, or a claim of the prose that the run contradicts, fails the book build."""

import re

import numpy as np
import pytest

from .conftest import REPOSITORY
from .test_book import build, small_book

FAILING_PAGE = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A page whose code fails

```{code-cell} ipython3
raise RuntimeError("planted execution error")
```
"""


def book_with_one_page(tmp_path, name, text):
    """A book with the course's configuration and a single page."""
    return small_book(tmp_path, {f"{name}.md": text})


def test_execution_error_fails_the_build(tmp_path):
    book = book_with_one_page(tmp_path, "failing", FAILING_PAGE)
    code, log = build(book, tmp_path / "out")
    assert code != 0, f"the build passed despite an execution error:\n{log[-3000:]}"
    assert "planted execution error" in log


def test_the_same_page_without_the_error_builds(tmp_path):
    """The control: the failure above is caused by the error, not by the set-up."""
    passing_page = FAILING_PAGE.replace('raise RuntimeError("planted execution error")', "1 + 1")
    book = book_with_one_page(tmp_path, "passing", passing_page)
    code, log = build(book, tmp_path / "out")
    assert code == 0, log[-3000:]


# A real claim of Chapter 2, asserted with the helper every chapter uses
# (autograder.claims.claim): its prose says the last 10 batches hold 65% of the
# running average's weight at momentum 0.1, and this cell asserts it. The cell is
# cheap (arithmetic only), so the tiny book below runs it as the chapter does.
CHAPTER = REPOSITORY / "book" / "02_train_vs_eval.md"
PROSE = r"$1 - 0.9^{10} \approx 65\%$ for $\alpha = 0.1$"
ASSERTED = '"65%"'
CODE_CELL = re.compile(r"```\{code-cell\} ipython3\n(.*?)```", re.S)


def claim_page(planted=False):
    """A page with the chapter's own claim cell; planted: the number it asserts is changed (65% -> 66%)."""
    text = CHAPTER.read_text()
    assert PROSE in " ".join(text.split()), "the chapter's prose no longer states the claim this test plants"
    cells = [cell for cell in CODE_CELL.findall(text) if "def window_weight" in cell]
    assert len(cells) == 1 and cells[0].count(ASSERTED) == 1, "the chapter's claim cell changed"
    cell = cells[0].replace(ASSERTED, '"66%"') if planted else cells[0]
    return (FAILING_PAGE.split("# A page")[0] + "# A claim of Chapter 2\n\n"
            "```{code-cell} ipython3\nimport math\n\nimport numpy as np\n\nfrom autograder.claims import claim\n```\n\n"
            f"```{{code-cell}} ipython3\n{cell}```\n")


def test_a_false_claim_fails_the_build(tmp_path):
    book = book_with_one_page(tmp_path, "claim", claim_page(planted=True))
    code, log = build(book, tmp_path / "out")
    assert code != 0, f"the build passed although a claim of the page is false:\n{log[-3000:]}"
    assert "ClaimFailed" in log and "holding 65% of the weight" in log, log[-3000:]


def test_the_same_claim_unchanged_builds(tmp_path):
    """The control: the chapter's claim cell as it is builds, so the failure above is the changed number's."""
    book = book_with_one_page(tmp_path, "claim", claim_page())
    code, log = build(book, tmp_path / "out")
    assert code == 0, log[-3000:]


def test_a_claim_names_what_the_text_says_and_what_was_measured():
    from autograder.claims import ClaimFailed, claim
    claim("two and two make four", 2 + 2 == 4, "4")
    with pytest.raises(ClaimFailed, match="the text says: two and two make five\n  this run measured: 4"):
        claim("two and two make five", 2 + 2 == 5, "4")
    with pytest.raises(TypeError, match="one truth value"):
        claim("every value is positive", np.array([1, 2]) > 0)
