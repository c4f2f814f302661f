"""The HTML book: built for real with warnings as errors, leak-free, and rendered in Chromium."""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autograder.grading import publishing
from autograder.grading.pipeline import EXERCISES, SOLUTIONS

from .conftest import REPOSITORY, code_text, normalized, read_notebook, secret_lines, visible_text

JUPYTER_BOOK = str(Path(sys.executable).with_name("jupyter-book"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def build(book_root, output):
    """Run the real `jupyter-book build` with warnings as errors; return (exit code, log)."""
    completed = subprocess.run(
        [JUPYTER_BOOK, "build", str(book_root), "--path-output", str(output), "-W", "--keep-going"],
        capture_output=True, text=True, timeout=900)
    return completed.returncode, completed.stdout + completed.stderr


def chapter_files():
    toc = yaml.safe_load((REPOSITORY / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


def small_book(folder, pages, config=None):
    """A book in ``folder`` with the course's configuration (or ``config``'s text) and ``pages`` ({name: text},
    the first the root, the others its chapters)."""
    book = folder / "book"
    book.mkdir()
    (book / "_config.yml").write_text(config or (REPOSITORY / "_config.yml").read_text())
    shutil.copytree(REPOSITORY / "_vendor", book / "_vendor")
    shutil.copytree(REPOSITORY / "_ext", book / "_ext")
    names = [name.rsplit(".", 1)[0] for name in pages]
    toc = f"format: jb-book\nroot: {names[0]}\n"
    if names[1:]:
        toc += "chapters:\n" + "".join(f"  - file: {name}\n" for name in names[1:])
    (book / "_toc.yml").write_text(toc)
    for name, text in pages.items():
        (book / name).parent.mkdir(parents=True, exist_ok=True)
        (book / name).write_text(text)
    return book


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    output = tmp_path_factory.mktemp("book")
    code, log = build(REPOSITORY, output)
    assert code == 0, f"jupyter-book build -W failed:\n{log[-6000:]}"
    return output / "_build" / "html"


@pytest.mark.xdist_group("book")
def test_every_toc_page_is_built(built_book):
    for name in chapter_files():
        assert (built_book / f"{name}.html").exists(), f"{name}.html is missing"


@pytest.mark.xdist_group("book")
def test_book_never_shows_solutions_or_hidden_tests(built_book):
    secrets = set()
    for notebook in SOLUTIONS.glob("*/*.ipynb"):
        secrets |= secret_lines(read_notebook(notebook))
    # A line one notebook hides may be printed in another's instructions (the
    # ValueError message torch raises, say); the release tests check each notebook.
    released = normalized("\n".join(cell.source for path in EXERCISES.glob("*/*.ipynb")
                                     for cell in read_notebook(path).cells))
    secrets = {line for line in secrets if normalized(line) not in released}
    for page in built_book.rglob("*.html"):
        raw = page.read_text(errors="replace")
        assert "BEGIN SOLUTION" not in raw and "BEGIN HIDDEN TESTS" not in raw, page
        text = visible_text(raw) + "\n" + code_text(raw)
        leaked = [line for line in secrets if normalized(line) in text]
        assert not leaked, f"{page.name} shows solution or hidden-test code: {leaked[:3]}"
    sources = [p for p in built_book.rglob("*") if p.suffix == ".ipynb" and "solutions" in p.parts]
    assert not sources, f"solution notebooks were copied into the book: {sources}"


@pytest.mark.xdist_group("book")
def test_exercise_pages_show_the_student_version_unexecuted(built_book):
    for name in chapter_files():
        if name.startswith("exercises/"):
            text = visible_text((built_book / f"{name}.html").read_text())
            assert "raise NotImplementedError()" in text, f"{name} is not the student version"
            assert "Traceback" not in text, f"{name} was executed"


@pytest.mark.xdist_group("book")
def test_chapter_pages_have_figures_and_math(built_book):
    for name in chapter_files():
        if name.startswith("book/0"):
            raw = (built_book / f"{name}.html").read_text()
            assert raw.count("<img") >= 2, f"{name} has fewer than two figures"
            assert "math notranslate" in raw, f"{name} has no math"
            assert "Traceback" not in visible_text(raw), f"{name} shows a traceback"


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium is needed to look at the book; `.ci/setup` installs Debian's chromium")


@pytest.mark.xdist_group("book")
def test_chapters_render_math_and_figures_in_a_real_browser(built_book, tmp_path):
    """Chromium loads each chapter; MathJax typesets the math and every figure decodes."""
    for name in chapter_files():
        if not name.startswith("book/0"):
            continue
        page = (built_book / f"{name}.html").as_uri()
        completed = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=15000", "--dump-dom", page],
            capture_output=True, text=True, timeout=120)
        dom = completed.stdout
        assert "<mjx-container" in dom, f"MathJax did not typeset {name}:\n{completed.stderr[-2000:]}"
        assert "math notranslate" not in dom or "<mjx-container" in dom


@pytest.mark.xdist_group("book")
def test_every_page_loads_cleanly_offline(built_book):
    """Every page in a real Chromium over DevTools: no console error, no failed request, nothing from the network.

    MathJax is loaded once (Jupyter Book adds every .js under a folder named _static to every page, so MathJax
    ships in _vendor/), each inline script once (_ext/unique_scripts.py), and no widget manager from a CDN.
    """
    from .browser import Browser
    pages = [p for p in sorted(built_book.rglob("*.html")) if not {"_static", "_sources"} & set(p.parts)]
    assert len(pages) >= 15, pages
    with Browser() as browser:
        for page in pages:
            seen = browser.visit(page.as_uri())
            outside = [url for url in seen["requested"] if not url.startswith(("file:", "data:", "blob:", "about:"))]
            name = page.relative_to(built_book)
            assert seen["errors"] == [], f"{name}: console errors {seen['errors'][:3]}"
            assert seen["failed"] == [], f"{name}: failed requests {seen['failed'][:3]}"
            assert outside == [], f"{name}: requests leave the machine {outside[:3]}"
            assert page.read_text().count("mathjax/tex-chtml.js") <= 1, f"{name} loads MathJax more than once"


def test_no_escaped_underscore_inside_text_mode():
    r"""MathJax shows ``\_`` inside ``\text{}`` literally, backslash and all: such names go in ``\mathtt{}``."""
    import re
    pattern = re.compile(r"\\text\{[^}]*\\_")
    sources = {path: path.read_text() for path in REPOSITORY.glob("book/*.md")}
    for path in [*SOLUTIONS.glob("*/*.ipynb"), *EXERCISES.glob("*/*.ipynb")]:
        sources[path] = "\n".join(c.source for c in read_notebook(path).cells if c.cell_type == "markdown")
    offenders = {str(path.relative_to(REPOSITORY)): pattern.findall(text)[:2]
                 for path, text in sources.items() if pattern.search(text)}
    assert offenders == {}, offenders


INTERACTIVE_PAGES = ("book/00_why_normalize", "book/01_four_steps", "book/02_train_vs_eval", "book/03_placement",
                     "book/04_variants")

# What plotly.js has drawn, not what the figure's data says: the SVG paths of the 2-D plots (the controls are drawn
# elsewhere) and, for a 3-D scene, its WebGL pixels.
DRAWN_PATHS = ("Array.from(document.querySelectorAll('.bn-interactive .cartesianlayer path'))"
               ".map(p => p.getAttribute('d')).join('|')")
# Whether the figure shows the frame that the page computed for the controls' values: the frame is found from the
# controls here (row-major, the first control slowest, as book/interactive.py stores them), not by the book's script.
SHOWS_ITS_FRAME = """(() => {
  const gd = document.querySelector('.bn-interactive');
  const spec = JSON.parse(document.querySelector(`script[data-for="${gd.id}"]`).textContent);
  let at = 0, slider = 0, menu = 0;
  for (const control of spec.controls) {
    const opts = control.kind === 'slider' ? gd.layout.sliders[slider++] : gd.layout.updatemenus[menu++];
    at = at * control.size + opts.active;
  }
  const frame = spec.frames[at];
  const plain = value => (value && typeof value === 'object' && 'length' in value) ? Array.from(value) : value;
  return frame.data.every((update, k) => Object.keys(update).every(
    key => JSON.stringify(update[key]) === JSON.stringify(plain(gd.data[frame.traces[k]][key]))));
})()"""
CONTROL_STATE = """(() => {
  const gd = document.querySelector('.bn-interactive');
  const controls = [...(gd.layout.sliders || []).map(s => ['slider', s.active, s.steps.length]),
                    ...(gd.layout.updatemenus || []).map(m => ['buttons', m.active, m.buttons.length])];
  return {controls: controls, scene: gd.layout.scene !== undefined,
          frames: (window.bnInteractive[gd.id] || {}).frames};
})()"""


def box_of(page, selector, number=0):
    """[x, y, width, height] in the viewport of the selector's match ``number`` in the first interactive figure,
    scrolled into view."""
    return page.evaluate(f"(() => {{ const e = document.querySelector('.bn-interactive')"
                         f".querySelectorAll('{selector}')[{number}]; e.scrollIntoView({{block: 'center'}});"
                         f"const r = e.getBoundingClientRect();"
                         f"return [r.x, r.y, r.width, r.height]; }})()")


def move_first_control(page, kind, active, size):
    """Click, with the mouse, far along the first slider's rail or on a button that is not the active one."""
    if kind == "slider":
        x, y, width, height = box_of(page, ".slider-rail-rect")
        page.click(x + width * (0.05 if active >= size / 2 else 0.95), y + height / 2)
    else:
        x, y, width, height = box_of(page, ".updatemenu-button", (active + 1) % size)
        page.click(x + width / 2, y + height / 2)


@pytest.mark.xdist_group("book")
def test_interactive_figures_respond_in_the_browser_without_a_kernel(built_book):
    """Each chapter's interactive figure is drawn by plotly.js, shipped with the book and loaded once; moving its
    first control with the mouse changes what is drawn (not only the control)."""
    from .browser import Browser
    for script in ("plotly.min.js", "bn_interactive.js"):
        assert (built_book / "_static" / "plotly" / script).is_file(), f"{script} is not shipped with the book"
    for page in built_book.rglob("*.html"):
        raw = page.read_text()
        assert "cdn.plot.ly" not in raw and "cdn.jsdelivr" not in raw, f"{page.name} loads something from a CDN"
        expected = 1 if 'class="bn-interactive"' in raw else 0
        for script in ("plotly.min.js", "bn_interactive.js"):
            assert raw.count(script) == expected, f"{page.name} names {script} {raw.count(script)} times"
    with Browser() as browser:
        for name in INTERACTIVE_PAGES:
            with browser.open((built_book / f"{name}.html").as_uri(), settle=0) as page:
                assert page.evaluate("document.querySelectorAll('.bn-interactive').length") >= 1, \
                    f"{name} has no interactive figure"
                page.wait_for("Object.keys(window.bnInteractive || {}).length", timeout=10)
                state = page.evaluate(CONTROL_STATE)
                assert state["frames"], f"{name}: plotly.js did not draw the interactive figure ({page.seen['errors']})"
                kind, active, size = state["controls"][0]

                def drawn():
                    if state["scene"]:
                        return page.capture(".bn-interactive .gl-container > div")
                    return page.evaluate(DRAWN_PATHS)

                before = drawn()
                move_first_control(page, kind, active, size)
                after_state = page.evaluate(CONTROL_STATE)
                assert after_state["controls"][0][1] != active, f"{name}: the click did not move the {kind}"
                deadline = time.monotonic() + 5
                while drawn() == before and time.monotonic() < deadline:
                    page.wait(0.1)
                assert drawn() != before, f"{name}: moving the {kind} from {active} to " \
                    f"{after_state['controls'][0][1]} changed nothing that is drawn"
                assert page.evaluate(SHOWS_ITS_FRAME), f"{name}: the figure does not show the frame its controls name"
                assert page.seen["errors"] == [], f"{name}: console errors {page.seen['errors'][:3]}"
                plotly_loads = [url for url in page.seen["requested"] if url.split("?")[0].endswith("plotly.min.js")]
                assert len(plotly_loads) == 1 and plotly_loads[0].startswith("file:"), \
                    f"{name} loads plotly.js {len(plotly_loads)} times: {plotly_loads}"


LAUNCH_MENU = 'class="dropdown dropdown-launch-buttons'   # sphinx-book-theme's launch group
COLAB_LINK = re.compile(r'href="(https://colab\.research\.google\.com/[^"]*)"')


def launch_problems(name, html_text):
    """What is wrong with page ``name``'s launch buttons: a chapter page has none (they would open its .md), an
    exercise page one menu with one Colab link, to its notebook in the configured repository."""
    menus, links = html_text.count(LAUNCH_MENU), COLAB_LINK.findall(html_text)
    if not name.startswith("exercises/"):
        return [f"{name}: a launch button on a chapter page, whose .md Colab cannot open: {menus} launch menus, "
                f"Colab links {links}; is the page in launch_button_pages (_config.yml)?"] if menus or links else []
    expected = publishing.colab_url(f"{name}.ipynb")
    if menus != 1 or links != [expected]:
        return [f"{name}: expected one launch menu with the Colab link {expected}, got {menus} menus and {links}"]
    return []


@pytest.mark.xdist_group("book")
def test_launch_buttons_only_on_exercise_pages(built_book):
    names = chapter_files()
    assert sum(name.startswith("exercises/") for name in names) == len(list(EXERCISES.glob("*/*.ipynb")))
    problems = [line for name in names for line in launch_problems(name, (built_book / f"{name}.html").read_text())]
    assert not problems, "\n".join(problems)


TRIVIAL_PAGE = ("---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
                "# {title}\n\n```{{code-cell}} ipython3\n1 + 1\n```\n")


def test_a_chapter_page_with_launch_buttons_is_caught(tmp_path):
    """The control: in a small book, one chapter page is given launch buttons again (launch_button_pages): the check
    names it, and neither the other chapter page nor the exercise page."""
    exercise = "exercises/01_four_steps/01_four_steps_numpy"
    config = (REPOSITORY / "_config.yml").read_text()
    assert 'launch_button_pages: ["exercises/*"]' in config
    config = config.replace('launch_button_pages: ["exercises/*"]', 'launch_button_pages: ["exercises/*", "planted"]')
    book = small_book(tmp_path, {"intro.md": "# A small book\n", "page.md": TRIVIAL_PAGE.format(title="A chapter page"),
                                 "planted.md": TRIVIAL_PAGE.format(title="A page with launch buttons again"),
                                 f"{exercise}.ipynb": (REPOSITORY / f"{exercise}.ipynb").read_text()}, config)
    code, log = build(book, tmp_path / "out")
    assert code == 0, log[-3000:]
    html = tmp_path / "out" / "_build" / "html"
    assert launch_problems("page", (html / "page.html").read_text()) == []
    assert launch_problems(exercise, (html / f"{exercise}.html").read_text()) == []
    planted = launch_problems("planted", (html / "planted.html").read_text())
    assert planted and "planted: a launch button on a chapter page" in planted[0], planted
