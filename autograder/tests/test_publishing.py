"""Publishing: one repository URL (`_config.yml`'s `repository.url`, which the README, the chapter pages and every
notebook's setup cell quote, and which a fork changes with one edit plus `pipeline release`), and the GitHub Actions
workflows that build and deploy the book and run every test, checked by the real actionlint."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autograder.grading import publishing

from .conftest import REPOSITORY, read_notebook

OTHER_URL = "https://github.com/another-org/another-course"


def copy_of_the_quoting_files(destination):
    """_config.yml and every file that quotes the install line, in a scratch folder laid out as the repository."""
    shutil.copy(REPOSITORY / publishing.CONFIG, destination / publishing.CONFIG)
    for path in publishing.quoting_files(REPOSITORY):
        target = destination / path.relative_to(REPOSITORY)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return destination


def test_every_place_installs_from_the_configured_repository():
    files = publishing.quoting_files()
    notebooks = [p for p in files if p.suffix == ".ipynb"]
    assert len(notebooks) >= 16 and REPOSITORY / "README.md" in files, f"the scan misses files: {files}"
    publishing.github_parts(publishing.repository_url())
    disagreeing = publishing.disagreements()
    assert not disagreeing, ("these places do not install from _config.yml's repository.url; run "
                             "`python -m autograder.grading.pipeline release`:\n" + "\n".join(disagreeing))


def test_setup_cells_install_only_when_the_import_fails():
    """On Colab the import fails and the cell installs from the repository; where the package is, nothing runs."""
    for path in publishing.quoting_files():
        if path.suffix != ".ipynb":
            continue
        source = publishing.setup_cell(read_notebook(path)).source
        line = f'%pip install --quiet "{publishing.install_requirement(publishing.repository_url())}"'
        assert f"try:\n    import autograder\nexcept ModuleNotFoundError:" in source and line in source, \
            f"{path.relative_to(REPOSITORY)}: the setup cell must install the check library only when " \
            f"`import autograder` fails, with {line}"


@pytest.mark.parametrize("planted", ["exercises/01_four_steps/01_four_steps_numpy.ipynb",
                                     "solutions/04_variants/04_variants_torch.ipynb", "README.md", "book/intro.md"])
def test_one_place_with_another_url_is_caught(tmp_path, planted):
    """The control: one file that installs from another repository is named, and only it."""
    root = copy_of_the_quoting_files(tmp_path)
    assert publishing.disagreements(root) == []
    path = root / planted
    text = path.read_text()
    assert publishing.repository_url(root) in text
    path.write_text(text.replace(publishing.repository_url(root), OTHER_URL))
    disagreeing = publishing.disagreements(root)
    assert disagreeing and all(line.startswith(f"{planted}: ") for line in disagreeing), disagreeing
    assert OTHER_URL in disagreeing[0] and publishing.repository_url(root) in disagreeing[0]


def test_a_setup_cell_without_the_install_line_is_caught(tmp_path):
    root = copy_of_the_quoting_files(tmp_path)
    planted = "exercises/02_train_vs_eval/02_train_vs_eval_torch.ipynb"
    path = root / planted
    path.write_text(path.read_text().replace(publishing.PACKAGE + " @ git+", "bn-from-scratch-typo @ git+"))
    assert publishing.disagreements(root) == [
        f"{planted}: its setup cell has no install line "
        f"`{publishing.install_requirement(publishing.repository_url(root))}`"]


def test_a_fork_changes_the_url_in_one_place(tmp_path):
    """A fork edits _config.yml; `pipeline release` rewrites the README, book/ and solutions/, and regenerates
    exercises/ from solutions/ (test_release proves that part): only exercises/ is left to the generation."""
    root = copy_of_the_quoting_files(tmp_path)
    old_url = publishing.repository_url(root)
    quoting = {str(p.relative_to(root)) for p in publishing.quoting_files(root) if old_url in p.read_text()}
    config = root / publishing.CONFIG
    config.write_text(config.read_text().replace(old_url, OTHER_URL))
    assert publishing.repository_url(root) == OTHER_URL
    before = publishing.disagreements(root)
    assert {line.split(": ")[0] for line in before} == quoting and len(quoting) >= 18, before
    changed = publishing.write_install_lines(root)
    assert "README.md" in changed and "book/intro.md" in changed
    assert sum(name.startswith("solutions/") for name in changed) == len(list(root.glob("solutions/*/*.ipynb")))
    left = publishing.disagreements(root)
    assert left and all(line.startswith("exercises/") for line in left), left
    assert publishing.write_install_lines(root) == [], "a second run must change nothing"
    for path in root.glob("solutions/*/*.ipynb"):
        original = (REPOSITORY / path.relative_to(root)).read_text()
        assert path.read_text() == original.replace(old_url, OTHER_URL), \
            f"{path.relative_to(root)}: the rewrite changed more than the URL"


# --- the GitHub Actions workflows ---------------------------------------------------------------------------------

WORKFLOWS = REPOSITORY / ".github" / "workflows"
BROKEN = {
    "an unknown key": ("    timeout-minutes: 90\n", "    timeout-minute: 90\n", 'unexpected key "timeout-minute"'),
    "a bad expression": ("group: ci-${{ github.ref }}", "group: ci-${{ github.reff }}", 'property "reff" is not defined'),
    "a shell mistake": ('"$GITHUB_WORKSPACE"', "$GITHUB_WORKSPACE", "SC2086"),
    "an action's unknown input": ("          path: _build/html\n", "          paths: _build/html\n",
                                  'input "paths" is not defined'),
}


def actionlint(*paths):
    """Run the real actionlint (with ShellCheck on the run: scripts); return (exit code, report)."""
    binary = Path(sys.executable).with_name("actionlint")
    binary = str(binary) if binary.exists() else shutil.which("actionlint")
    assert binary, "actionlint is missing: .ci/setup installs it from requirements.txt"
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "ShellCheck is missing, so actionlint would skip the run: scripts; .ci/setup installs it as root"
    completed = subprocess.run([binary, "-no-color", "-shellcheck", shellcheck, *map(str, paths)],
                               capture_output=True, text=True, timeout=120)
    return completed.returncode, completed.stdout + completed.stderr


def workflow(name):
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_workflows_pass_actionlint():
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert [p.name for p in paths] == ["book.yml", "ci.yml"], paths
    code, report = actionlint(*paths)
    assert code == 0, f"actionlint found problems in the workflows:\n{report}"


def test_book_workflow_builds_with_warnings_as_errors_and_deploys_to_pages():
    book = workflow("book.yml")
    assert book["on"]["push"] == {"branches": ["main"]}
    steps = book["jobs"]["build"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert "bash .ci/setup" in runs and ".venv/bin/jupyter-book build . -W --keep-going" in runs, runs
    uses = [step["uses"] for job in book["jobs"].values() for step in job["steps"] if "uses" in step]
    assert "actions/upload-pages-artifact@v4" in uses and "actions/deploy-pages@v5" in uses, uses
    assert {"path": "_build/html"} in [step.get("with") for step in steps]
    deploy = book["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "github-pages" and deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert book["concurrency"]["group"] == "pages"
    assert all(re.fullmatch(r"[\w-]+/[\w-]+@v\d+", use) for use in uses), f"actions pinned by major version: {uses}"


def test_ci_workflow_runs_every_test_as_root():
    ci = workflow("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    job = ci["jobs"]["test"]
    assert job["timeout-minutes"] == 90
    assert job["steps"][-1]["run"] == "bash .ci/run"
    # A container runs as root, where .ci/setup installs Debian's packages and the sandbox may start.
    assert job["container"]["image"].startswith("python:3.11-") and "--privileged" in job["container"]["options"]


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_actionlint_catches_a_broken_workflow(tmp_path, fault):
    """The control: each planted fault, in a copy of the workflows, makes actionlint fail and name it."""
    old, new, reported = BROKEN[fault]
    for path in WORKFLOWS.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    planted = [p for p in tmp_path.glob("*.yml") if old in p.read_text()]
    assert len(planted) == 1, f"{old!r} is in {planted}"
    planted[0].write_text(planted[0].read_text().replace(old, new, 1))
    code, report = actionlint(*sorted(tmp_path.glob("*.yml")))
    assert code != 0 and reported in report, f"actionlint missed {fault}:\n{report}"
