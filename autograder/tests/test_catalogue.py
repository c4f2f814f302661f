"""The catalogue of mistakes is the one vocabulary of checks and corpus: every key used exists, every key is used."""

import re
from pathlib import Path

from autograder.grading.mutants import corpus
from autograder.mistakes import CATALOGUE, VOCABULARY, sentence

from .conftest import source_notebooks

LIBRARY = Path(__file__).resolve().parents[1]


def _library_source():
    return "\n".join(path.read_text() for path in LIBRARY.glob("*.py") if path.name != "mistakes.py")


def test_every_catalogue_key_is_used_by_a_check():
    source = _library_source()
    unused = [key for key in CATALOGUE if not re.search(rf"[\"']{key}(/\w+)?[\"']", source)]
    assert not unused, f"catalogue entries no check names: {unused}"


def test_every_key_a_check_names_is_in_the_catalogue():
    source = _library_source()
    named = set(re.findall(r"sentence\([\"'](\w+)", source))
    assert named, "no check names a mistake through sentence(); is the scan looking at the library?"
    assert named <= set(CATALOGUE), f"unknown keys: {sorted(named - set(CATALOGUE))}"


def test_every_planted_bug_cites_a_key_or_a_message():
    for _, notebook in source_notebooks():
        for mutant in corpus(notebook[:-len(".ipynb")]):
            if mutant.diagnosis is None:
                continue
            looks_like_a_key = re.fullmatch(r"[a-z0-9_]+", mutant.diagnosis) is not None
            assert not looks_like_a_key or mutant.diagnosis in CATALOGUE, (mutant.name, mutant.diagnosis)


def test_sentences_speak_each_api():
    for key in CATALOGUE:
        for api in VOCABULARY:
            text = sentence(key, api)
            assert "{" not in text and "}" not in text, (key, api, text)
    assert "dim=(0, 2, 3)" in sentence("statistics_over_axis_0", "torch")
    assert "axis=(0, 2, 3)" in sentence("statistics_over_axis_0", "numpy")
