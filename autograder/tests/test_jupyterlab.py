"""A student in a real JupyterLab: the released notebooks and a chapter's ipywidgets demo, run in the browser.

The test starts ``jupyter lab`` from this environment on a free port of 127.0.0.1 with its own token, settings,
workspaces and kernel, in a temporary folder, and drives it with the headless Chromium of :mod:`.browser`: the
mouse opens the Run menu and clicks "Run All Cells", the keyboard types answers into cells, the mouse drags a
widget's slider. What is asserted is what the page then shows. Screenshots go to ``$BN_SCREENSHOTS`` when it is
set (else to pytest's temporary folder). When the module is done the server is shut down, and no process started
here (the server, its kernels, Chromium) may be left running.
"""

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import requests

from autograder import four_steps
from autograder.grading.pipeline import EXERCISES, SOLUTIONS, filled_in, grade_id
from autograder.quiz import Recorded

from .browser import Browser
from .conftest import REPOSITORY, normalized, read_notebook

pytestmark = pytest.mark.xdist_group("jupyterlab")

JUPYTER_LAB = str(Path(sys.executable).with_name("jupyter-lab"))
ERROR_MIME = "application/vnd.jupyter.stderr"   # how JupyterLab renders an error (and anything on stderr)
VIEWPORT = {"width": 1100, "height": 1400}

# Each code cell of the open notebook as JupyterLab shows it: prompt, source and rendered outputs.
CELLS = """[...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell => ({
  index: Number(cell.dataset.windowedListIndex),
  code: cell.classList.contains('jp-CodeCell'),
  prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
  source: [...cell.querySelectorAll('.jp-InputArea .cm-line')].map(line => line.textContent).join('\\n'),
  outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(output => ({
    mime: output.dataset.mimeType || '', text: output.textContent})),
}))"""
NOTIFICATION_SETTINGS = "@jupyterlab/apputils-extension:notification"
QUIET = {"checkForUpdates": False, "fetchNews": "false"}
POPUPS = "[...document.querySelectorAll('.jp-Dialog, .Toastify__toast')].map(e => e.textContent)"
KERNEL_STATUS = "(document.querySelector('.jp-Notebook-ExecutionIndicator') || {dataset: {}}).dataset.status"
# The kernel the test's kernelspec names (the toolbar shows this name once the kernel runs, "No Kernel" before).
KERNEL_NAME = "Python 3 (course)"
KERNEL_SHOWN = "(document.querySelector('.jp-Toolbar-kernelName') || {}).textContent"


class JupyterLab:
    """``jupyter lab`` serving ``root`` on 127.0.0.1 with a token; everything it writes stays under ``home``."""

    def __init__(self, home):
        self.home, self.root = home, home / "notebooks"
        self.root.mkdir()
        self.token = secrets.token_hex(16)
        self.env = dict(os.environ, **{name: str(home / folder) for name, folder in [
            ("HOME", "home"), ("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
            ("JUPYTER_PATH", "share")]})
        # The kernel is this environment's Python (JUPYTER_PATH comes first, even before the environment's own
        # kernel, whose "python" is whatever PATH finds); the course's package comes from this checkout.
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
        self._write("share/kernels/python3/kernel.json", {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": KERNEL_NAME, "language": "python"})
        # No news or update check (nor the notification asking whether to fetch them).
        self._write(f"settings/{NOTIFICATION_SETTINGS.replace(':', '/')}.jupyterlab-settings", QUIET)

    def _write(self, relative, content):
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))

    def __enter__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.home / "jupyterlab.log"
        self.process = subprocess.Popen(
            [JUPYTER_LAB, "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=self.env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"jupyter lab did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return self

    def _answers(self):
        try:
            return self.api("get", "status").ok
        except requests.ConnectionError:
            return False

    def api(self, method, path, **options):
        """A request to the server's REST API (``path`` after /api/, or after the base URL when it starts with /)."""
        url = f"{self.base}{path}" if path.startswith("/") else f"{self.base}/api/{path}"
        return requests.request(method, url, timeout=10, headers={"Authorization": f"token {self.token}"},
                                **options)

    def url(self, notebook):
        """The address at which a student opens ``notebook`` (a file under ``root``), in a fresh workspace."""
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def __exit__(self, *exc):
        """Shut the server down as its own API does (kernels first); kill what is left after 30 s."""
        if self.process.poll() is None:
            try:
                self.api("post", "shutdown")
                self.process.wait(30)
            except (requests.RequestException, subprocess.TimeoutExpired):
                self.process.kill()
        self.process.wait()


def descendants():
    """The processes this test process started, and theirs (running, not yet reaped)."""
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


def command(process):
    """A process's command line, or '' once it has gone."""
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return ""


def left_running(processes, timeout=10):
    """Those of ``processes`` still alive after ``timeout`` seconds (zombies count as gone)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if running(p)]


def running(process):
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server and one Chromium, shared by this module; afterwards no process of theirs runs."""
    before = {p.pid for p in descendants()}
    with JupyterLab(tmp_path_factory.mktemp("jupyterlab")) as server, Browser() as browser:
        spec = server.api("get", "kernelspecs").json()["kernelspecs"]["python3"]["spec"]
        assert spec["argv"][0] == sys.executable, f"the notebooks' kernel is not this environment's Python: {spec}"
        server.browser = browser
        yield server
        started = {p: command(p) for p in descendants() if p.pid not in before}
        kernels = {k["id"] for k in server.api("get", "kernels").json()}
    assert list((server.home / "workspaces").glob("*.jupyterlab-workspace")), "JupyterLab saved its workspace elsewhere"
    seen = {k for k in kernels if any(f"kernel-{k}.json" in line for line in started.values())}
    assert seen == kernels, f"kernels the server ran that the check below would not see: {kernels - seen}"
    leftover = left_running(list(started))
    for process in leftover:
        process.kill()
    assert leftover == [], "processes left running after JupyterLab and Chromium stopped: " + \
        "; ".join(f"{p.pid} {started[p][:120]}" for p in leftover)


@pytest.fixture
def screenshots(tmp_path):
    folder = Path(os.environ["BN_SCREENSHOTS"]) if os.environ.get("BN_SCREENSHOTS") else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Driving JupyterLab the way a student does --------------------------------------------------------------------

class Student:
    """One notebook open in a JupyterLab tab of ``page``; ``notebook`` is what the file holds."""

    def __init__(self, page, notebook, screenshots):
        self.page, self.notebook, self.screenshots = page, notebook, screenshots
        page.call("Emulation.setDeviceMetricsOverride", deviceScaleFactor=1, mobile=False, **VIEWPORT)
        shown = page.wait_for(f"document.querySelectorAll('.jp-Notebook .jp-Cell').length === "
                              f"{len(notebook.cells)} && {KERNEL_STATUS} === 'idle' && "
                              f"{KERNEL_SHOWN} === {json.dumps(KERNEL_NAME)}", timeout=60)
        assert shown, f"JupyterLab did not show the notebook with an idle kernel {KERNEL_NAME!r} (the toolbar " \
            f"says {page.evaluate(KERNEL_SHOWN)!r}): {self.page.seen['errors'][:3]}"
        self.assert_nothing_in_the_way()

    def assert_nothing_in_the_way(self):
        popups = self.page.evaluate(POPUPS)
        assert popups == [], f"JupyterLab shows a dialog or notification in the way: {popups}"

    def index(self, cell_id):
        """The position of the cell with this nbgrader grade_id (or cell id)."""
        return next(i for i, c in enumerate(self.notebook.cells) if cell_id in (grade_id(c), c.get("id")))

    def cells(self):
        shown = self.page.evaluate(CELLS)
        assert [c["index"] for c in shown] == list(range(len(self.notebook.cells))), "cells missing from the page"
        for cell, expected in zip(shown, self.notebook.cells):
            # CodeMirror draws only the lines near the viewport: each line drawn must be one of the cell's.
            lines = expected.source.split("\n")
            assert not cell["code"] or all(line in lines for line in cell["source"].split("\n")), \
                f"cell {cell['index']} shows other code than the notebook holds:\n{cell['source'][:300]}"
        return shown

    def run_from_menu(self, command):
        """Open the Run menu with the mouse and click the item of ``command`` (e.g. runmenu:run-all), then wait."""
        self.page.click_on(".lm-MenuBar-item", "Run")
        self.page.wait_for(f"!!document.querySelector('.lm-Menu-item[data-command=\"{command}\"]')", timeout=5)
        self._wait_after(lambda: self.page.click_on(f".lm-Menu-item[data-command='{command}']"))

    def type_into(self, cell_id, text):
        """Click into a cell's editor, select everything and type ``text`` instead."""
        self.page.click_on(f".jp-Cell[data-windowed-list-index='{self.index(cell_id)}'] .cm-content")
        self.page.press("a", "Control")
        self.page.type(text)
        self.notebook.cells[self.index(cell_id)].source = text

    def shift_enter(self, times=1):
        """Run the selected cell and select the next one, ``times`` times (Shift+Enter), then wait."""
        self._wait_after(lambda: [self.page.press("Enter", "Shift") for _ in range(times)])
        # Shift+Enter in the last cell adds an empty one below it, as JupyterLab does.
        shown = self.page.evaluate("document.querySelectorAll('.jp-Notebook .jp-Cell').length")
        self.notebook.cells += [nbformat.v4.new_code_cell() for _ in range(shown - len(self.notebook.cells))]

    def _wait_after(self, action, timeout=90):
        """Do ``action`` and wait until it has run at least one more cell and the kernel is idle again."""
        count = self._last_count()
        action()
        deadline = time.monotonic() + timeout
        while not (self._last_count() > count and self.page.evaluate(KERNEL_STATUS) == "idle"
                   and "*" not in "".join(c["prompt"] for c in self.page.evaluate(CELLS))):
            assert time.monotonic() < deadline, f"the cells were still running after {timeout} s"
            self.page.wait(0.2)

    def _last_count(self):
        counts = [int(c["prompt"].strip("[]: ")) for c in self.page.evaluate(CELLS)
                  if c["prompt"].strip("[]: ").isdigit()]
        return max(counts, default=0)

    def _wait_for_layout(self, timeout=5):
        """Until the notebook's height and scroll position have not changed for 0.45 s (MathJax typesets rendered
        Markdown late, and JupyterLab scrolls to the active cell)."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline and not (len(seen) >= 4 and len(set(seen[-4:])) == 1):
            seen.append(self.page.evaluate("(o => `${o.scrollHeight} ${o.scrollTop}`)"
                                           "(document.querySelector('.jp-WindowedPanel-outer'))"))
            self.page.wait(0.15)

    def screenshot(self, name, cell_id=None):
        """A PNG of the JupyterLab window, with the cell ``cell_id`` scrolled to the middle."""
        if cell_id is not None:
            self.page.evaluate(f"document.querySelector(\".jp-Cell[data-windowed-list-index='{self.index(cell_id)}']\")"
                               ".scrollIntoView({block: 'center'})")
        self._wait_for_layout()
        self.page.screenshot(str(self.screenshots / f"{name}.png"), width=VIEWPORT["width"], whole_page=False)
        self.assert_nothing_in_the_way()


def text_of(cell):
    return normalized(" ".join(output["text"] for output in cell["outputs"]))


def failures(student, cells):
    """'test cell: what went wrong' for each code cell that did not run or shows an error, by grade_id."""
    found = []
    for cell, source in zip(cells, student.notebook.cells):
        name = grade_id(source) or f"cell {cell['index']}"
        if not cell["code"] or not source.source.strip():   # JupyterLab does not run an empty cell
            continue
        if not cell["prompt"].strip("[]: ").isdigit():
            found.append(f"{name}: not run (prompt {cell['prompt']!r})")
        elif any(output["mime"] == ERROR_MIME for output in cell["outputs"]):
            found.append(f"{name}: {text_of(cell)[-300:]}")
    return found


def assert_every_cell_passed(student):
    """Every code cell ran, none shows an error, and every quiz test cell says the answer is recorded."""
    cells = student.cells()
    assert failures(student, cells) == [], "cells that failed in JupyterLab:\n" + "\n".join(failures(student, cells))
    for cell, source in zip(cells, student.notebook.cells):
        if "check_choice(" in source.source:
            assert "is recorded" in text_of(cell), f"{grade_id(source)} shows no recorded answer: {text_of(cell)}"


def message_of(check, *args):
    """What the check library says about ``args``: the message of the CheckFailure it raises."""
    with pytest.raises(AssertionError) as raised:
        check(*args)
    return normalized(str(raised.value))


def batch_mean(x):
    """The released stub of the notebook's first exercise."""
    raise NotImplementedError()


def new_notebook(*cells):
    """A notebook of these cells, for the kernel the released notebooks name."""
    return nbformat.v4.new_notebook(cells=list(cells), metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def answered(relative):
    """The release of ``relative`` with every solution cell answered from the solution notebook."""
    return filled_in(read_notebook(EXERCISES / relative), read_notebook(SOLUTIONS / relative))


# The tests --------------------------------------------------------------------------------------------------------

def test_released_notebook_shows_the_check_messages_in_jupyterlab(lab, screenshots):
    """Run All on the untouched release stops at the first test cell, which shows the check library's message;
    a wrong answer typed in gets the comparison and the likely cause; typed quiz answers are 'recorded'."""
    release = read_notebook(EXERCISES / "01_four_steps" / "01_four_steps_numpy.ipynb")
    nbformat.write(release, lab.root / "release.ipynb")
    with lab.browser.open(lab.url("release.ipynb"), settle=0) as page:
        student = Student(page, release, screenshots)
        student.run_from_menu("runmenu:run-all")
        cells = student.cells()
        first_test = student.index("test_batch_mean")
        assert failures(student, cells)[0].startswith("test_batch_mean: "), failures(student, cells)
        assert message_of(four_steps.check_batch_mean, batch_mean) not in text_of(cells[first_test - 1])  # control
        assert message_of(four_steps.check_batch_mean, batch_mean) in text_of(cells[first_test]), \
            f"test_batch_mean does not show the check library's message: {text_of(cells[first_test])}"
        assert "Replace raise NotImplementedError() with your code" in text_of(cells[first_test])
        # JupyterLab stops a Run All at the first error: the student sees nothing below it run.
        assert all(not c["prompt"].strip("[]: ") for c in cells[first_test + 1:] if c["code"])
        student.screenshot("release_run_all", "test_batch_mean")
        with pytest.raises(AssertionError, match="test_batch_mean"):   # the control of the answered run's check
            assert_every_cell_passed(student)

        # A classic mistake typed in: the mean over axis 0 only; Shift+Enter twice runs it and its test.
        wrong = "def batch_mean(x):\n    return x.mean(axis=0)\n"
        expected = message_of(four_steps.check_batch_mean, lambda x: x.mean(axis=0))
        assert "likely cause: you reduced over axis 0 only" in expected
        assert expected not in text_of(cells[first_test])   # control: what the next assertion reads is new
        student.type_into("batch_mean", wrong)
        student.shift_enter(2)
        shown = text_of(student.cells()[first_test])
        assert expected in shown, f"test_batch_mean after the wrong answer shows {shown!r}, not {expected!r}"
        student.screenshot("release_wrong_mean", "test_batch_mean")

        # The quiz: answers typed in, then Run > Run Selected Cell and All Below.
        answers = {"q1": "b", "q2": "c", "q3": "a"}

        def quiz_shows_recorded(cells):
            return [text_of(cells[student.index(f"test_quiz_{q}")]) == normalized(repr(Recorded(q, a)))
                    for q, a in answers.items()]

        assert quiz_shows_recorded(cells) == [False] * 3   # control: not before the answers ran
        student.type_into("quiz_answers", "".join(f'answer_{q} = "{a}"\n' for q, a in answers.items()))
        student.run_from_menu("notebook:run-all-below")
        cells = student.cells()
        assert quiz_shows_recorded(cells) == [True] * 3, [text_of(c) for c in cells[-3:]]
        for question in answers:
            shown = text_of(cells[student.index(f"test_quiz_{question}")])
            assert "graded when your notebook is graded" in shown and "does not say whether it is right" in shown
        student.screenshot("release_quiz_recorded", "test_quiz_q2")
        assert page.seen["errors"] == [], f"console errors in JupyterLab: {page.seen['errors'][:3]}"


@pytest.mark.parametrize("notebook", ["01_four_steps_numpy.ipynb", "01_four_steps_torch.ipynb"])
def test_answered_notebook_passes_every_test_cell_in_jupyterlab(lab, screenshots, notebook):
    """The release with the solutions filled in: after Run All (from the menu) every cell ran without an error
    output and the quiz cells say 'recorded'; the PyTorch one runs torch in JupyterLab's kernel."""
    submission = answered(Path("01_four_steps") / notebook)
    nbformat.write(submission, lab.root / f"answered_{notebook}")
    with lab.browser.open(lab.url(f"answered_{notebook}"), settle=0) as page:
        student = Student(page, submission, screenshots)
        student.run_from_menu("runmenu:run-all")
        assert_every_cell_passed(student)
        example = text_of(student.cells()[student.index("worked-example")])
        assert "-1.7125" in example and "2.3125" in example, f"the worked example printed {example!r}"
        name = notebook.removesuffix(".ipynb")
        student.screenshot(f"answered_{name}_example", "worked-example")
        student.screenshot(f"answered_{name}_quiz", student.notebook.cells[-1].get("id"))
        assert page.seen["errors"] == [], f"console errors in JupyterLab: {page.seen['errors'][:3]}"


# The demo's slider labelled {label!r} (its readout and the middle of its handle) and the figure it draws, as
# JupyterLab's widget manager renders them.
DEMO_STATE = """(() => {{
  const slider = [...document.querySelectorAll('.widget-interact .widget-slider')]
    .find(s => s.querySelector('.widget-label').textContent.trim() === {label!r});
  const image = document.querySelector('.widget-interact .widget-output img');
  if (!slider || !image) return null;
  slider.scrollIntoView({{block: 'nearest'}});
  const r = slider.querySelector('.noUi-handle').getBoundingClientRect();
  return {{readout: slider.querySelector('.widget-readout').textContent, image: image.src,
           handle: [r.x + r.width / 2, r.y + r.height / 2]}};
}})()"""


def chapter_demo(page, marker):
    """A chapter page as the notebook a student opens, up to its ipywidgets demo (the cell holding ``marker``),
    with an empty code cell after it."""
    from myst_nb.core.read import read_myst_markdown_notebook
    path = REPOSITORY / page
    notebook = read_myst_markdown_notebook(path.read_text(), path=path)
    demo = next((i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and marker in c.source), None)
    assert demo is not None, f"{page} has no code cell with {marker!r}: the demo this test runs has moved"
    notebook.cells[demo + 1:] = [nbformat.v4.new_code_cell(id="scratch")]
    notebook.cells[demo].id = "demo"
    return notebook


def test_chapter_widget_demo_responds_to_a_slider_dragged_in_jupyterlab(lab, screenshots):
    """Chapter 1's ipywidgets demo, opened as a notebook and run in JupyterLab, draws a new histogram when the
    mouse drags its gamma slider; with the demo's callbacks removed, the same drag changes only the slider."""
    notebook = chapter_demo("book/01_four_steps.md", "widgets.interactive(")
    nbformat.write(notebook, lab.root / "01_four_steps_demo.ipynb")
    with lab.browser.open(lab.url("01_four_steps_demo.ipynb"), settle=0) as page:
        student = Student(page, notebook, screenshots)
        student.run_from_menu("runmenu:run-all")
        assert failures(student, student.cells()) == [], failures(student, student.cells())
        state = DEMO_STATE.format(label="gamma")
        before = page.wait_for(state, timeout=20)
        assert before, "the demo shows no gamma slider and figure in JupyterLab"
        assert before["readout"] == "1.50", before["readout"]
        page.wait(1.0)
        assert page.evaluate(state) == before, "the demo's figure changes with nobody touching it"
        student.screenshot("demo_before", "demo")

        def drag_gamma(pixels):
            handle = page.evaluate(state)["handle"]
            page.drag(handle, [handle[0] + pixels, handle[1]])

        drag_gamma(-14)
        after = page.wait_for(f"(() => {{ const s = {state}; return s.image !== {json.dumps(before['image'])} "
                              f"&& s.readout !== '1.50' && {KERNEL_STATUS} === 'idle' && s; }})()", timeout=20)
        assert after, f"dragging gamma's slider changed nothing the demo draws: {page.evaluate(state)['readout']}"
        page.wait(1.0)   # the last value the drag sent has been drawn
        after = page.evaluate(state)
        gamma = float(after["readout"].replace("\N{MINUS SIGN}", "-"))   # the readout writes a real minus sign
        assert gamma < 1.5 and after["image"] != before["image"], after["readout"]
        student.screenshot("demo_after_drag", "demo")

        # Control: the same drag, with the demo's callback unhooked, moves the slider and redraws nothing.
        student.type_into("scratch", "for control in demo.kwargs_widgets:\n"
                                     "    control.unobserve(demo.update, names='value')\n")
        student.shift_enter()
        assert failures(student, student.cells()) == [], failures(student, student.cells())
        drag_gamma(-10)
        page.wait(2.0)
        unhooked = page.evaluate(state)
        assert unhooked["readout"] != after["readout"] and unhooked["image"] == after["image"], \
            "without its callback the demo should only move the slider"
        assert page.seen["errors"] == [], f"console errors in JupyterLab: {page.seen['errors'][:3]}"


def test_without_the_quiet_settings_jupyterlab_asks_about_news(lab, screenshots):
    """Control of the check that nothing is in the way: with JupyterLab's notification settings at their defaults,
    a new tab asks whether to fetch Jupyter news, and the check says so."""
    notebook = new_notebook(nbformat.v4.new_markdown_cell("An empty notebook.", id="empty"))
    nbformat.write(notebook, lab.root / "empty.ipynb")
    settings = f"/lab/api/settings/{NOTIFICATION_SETTINGS}"
    assert lab.api("put", settings, json={"raw": "{}"}).status_code == 204
    try:
        with lab.browser.open(lab.url("empty.ipynb"), settle=0) as page:
            page.wait_for(POPUPS + ".length", timeout=10)
            with pytest.raises(AssertionError, match="notified about official Jupyter news"):
                Student(page, notebook, screenshots)
    finally:
        assert lab.api("put", settings, json={"raw": json.dumps(QUIET)}).status_code == 204


def test_leftover_check_sees_what_a_notebook_leaves_running(lab, screenshots):
    """Control of the module's last check: a process that a cell starts in a session of its own outlives its
    kernel, and the check reports it (this test then kills it)."""
    spawn = "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True).pid"
    notebook = new_notebook(nbformat.v4.new_code_cell(spawn, id="spawn"))
    nbformat.write(notebook, lab.root / "spawn.ipynb")
    with lab.browser.open(lab.url("spawn.ipynb"), settle=0) as page:
        student = Student(page, notebook, screenshots)
        student.run_from_menu("runmenu:run-all")
        sleeper = int(text_of(student.cells()[0]))
        kernel_id = next(s["kernel"]["id"] for s in lab.api("get", "sessions").json() if s["path"] == "spawn.ipynb")
        kernel = next(p for p in descendants() if f"kernel-{kernel_id}.json" in command(p))
        tree = [kernel, *kernel.children(recursive=True)]
        assert sleeper in [p.pid for p in tree]
        try:
            assert lab.api("delete", f"kernels/{kernel_id}").status_code == 204
            assert [p.pid for p in left_running(tree, timeout=3)] == [sleeper]
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(sleeper).kill()
