"""The repository URL: set once, in ``_config.yml``'s ``repository.url``, and quoted everywhere from there.

The book's launch buttons read it from ``_config.yml`` (Jupyter Book passes it
to the theme). Every other place quotes it in the install line of the check
library, ``bn-from-scratch @ git+URL``: the README, the chapter pages
(``book/*.md``) and the setup cell of every notebook, which runs
``%pip install --quiet "bn-from-scratch @ git+URL"`` when ``import autograder``
fails (on Colab). ``python -m autograder.grading.pipeline release`` rewrites
those lines in the README, ``book/`` and ``solutions/`` from ``_config.yml``
before it generates ``exercises/``, so a fork changes the URL with one edit.
"""

import re
from pathlib import Path

import nbformat
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
CONFIG = "_config.yml"
PACKAGE = "bn-from-scratch"
# The install line as every place quotes it; the URL ends at a quote, a backtick, a bracket or whitespace.
INSTALL_LINE = re.compile(re.escape(PACKAGE) + r" @ git\+(?P<url>[^\s\"'`)\\]+)")
SETUP_CELL = "setup"


def repository_setting(key, root=REPOSITORY):
    """``repository.KEY`` of ``_config.yml``."""
    value = (yaml.safe_load((Path(root) / CONFIG).read_text()).get("repository") or {}).get(key)
    if not value:
        raise ValueError(f"{CONFIG} has no repository.{key}: set it to the course's repository")
    return value


def repository_url(root=REPOSITORY):
    """The one configured repository URL: ``repository.url`` in ``_config.yml``."""
    return repository_setting("url", root).rstrip("/")


def colab_url(notebook, root=REPOSITORY):
    """Where Colab opens ``notebook`` (a path in the repository) of the configured repository and branch."""
    org, repo = github_parts(repository_url(root))
    return f"https://colab.research.google.com/github/{org}/{repo}/blob/{repository_setting('branch', root)}/{notebook}"


def github_parts(url):
    """(org, repo) of a GitHub URL, as the launch buttons split it."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", url)
    if not match:
        raise ValueError(f"repository.url {url!r} is not https://github.com/<org>/<repo>: Colab opens GitHub only")
    return match.groups()


def install_requirement(url):
    """What pip installs: ``bn-from-scratch @ git+URL``."""
    return f"{PACKAGE} @ git+{url}"


def quoting_files(root=REPOSITORY):
    """The files that quote the install line: the README, the chapter pages and every notebook."""
    root = Path(root)
    return [root / "README.md", *sorted(root.glob("book/*.md")),
            *sorted(root.glob("solutions/*/*.ipynb")), *sorted(root.glob("exercises/*/*.ipynb"))]


def setup_cell(notebook):
    """The notebook's setup cell (grade_id ``setup``), or None."""
    for cell in notebook.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == SETUP_CELL:
            return cell
    return None


def disagreements(root=REPOSITORY):
    """Every place whose repository URL is not the configured one: ["path: what it quotes"] (empty when all agree).

    The README and every notebook's setup cell must quote the install line; a
    chapter page need not, but any it quotes must agree.
    """
    root = Path(root)
    url = repository_url(root)
    found = []
    for path in quoting_files(root):
        name = path.relative_to(root)
        if path.suffix == ".ipynb":
            cell = setup_cell(nbformat.read(path, as_version=4))
            if cell is None:
                found.append(f"{name}: no setup cell (grade_id {SETUP_CELL!r})")
                continue
            text, where = cell.source, "its setup cell"
        else:
            text, where = path.read_text(), "the text"
        urls = [m["url"] for m in INSTALL_LINE.finditer(text)]
        required = path.suffix == ".ipynb" or path.name == "README.md"
        if required and not urls:
            found.append(f"{name}: {where} has no install line `{install_requirement(url)}`")
        found.extend(f"{name}: {where} installs from {other}, not {url} ({CONFIG} repository.url)"
                     for other in urls if other.rstrip("/") != url)
    return found


def write_install_lines(root=REPOSITORY):
    """Rewrite every install line in the README, book/ and solutions/ to the configured URL; return what changed.

    Text replacement keeps each file byte for byte otherwise (a notebook's
    JSON layout and cell ids included). exercises/ follows from solutions/ by
    the release.
    """
    root = Path(root)
    url = repository_url(root)
    changed = []
    for path in quoting_files(root):
        if "exercises" in path.relative_to(root).parts:
            continue
        text = path.read_text()
        new = INSTALL_LINE.sub(lambda match: install_requirement(url), text)
        if new != text:
            path.write_text(new)
            changed.append(str(path.relative_to(root)))
    return changed
