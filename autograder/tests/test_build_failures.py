"""A notebook execution error fails the book build (the configuration's promise)."""

import shutil

from .conftest import REPOSITORY
from .test_book import build

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
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(REPOSITORY / "_config.yml", book)
    shutil.copytree(REPOSITORY / "_vendor", book / "_vendor")
    shutil.copytree(REPOSITORY / "_ext", book / "_ext")
    (book / "_toc.yml").write_text(f"format: jb-book\nroot: {name}\n")
    (book / f"{name}.md").write_text(text)
    return book


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
