"""Chapter 09's diagnoses checks, beyond what tests/test_checks.py runs.

Every wrong label on every report must fail with a message naming the server and never the right
label; every row a hint quotes must exist in that report; the visible tests must stop at one report,
the hidden ones at none; realistic ways of handing in kvlib's key must score 0; and the checks must not
run the simulations (they grade a dict).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from exercise_edits import failure_message

from autograder.checks.ch09 import diagnosis as checks
from autograder.harness import run_exercise
from kvlib.serve import diagnosis
from kvlib.serve.diagnosis import BOTTLENECKS, FIXES, LETTERS, answer_key

pytestmark = [pytest.mark.ch09, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "09_interview.ipynb"
GID = "diagnoses"


def _source(answers: dict) -> str:
    return f"def diagnoses() -> dict:\n    return {answers!r}\n"


def _fails(answers: dict | str) -> str:
    return failure_message(NOTEBOOK, GID, answers if isinstance(answers, str) else _source(answers))


@pytest.mark.parametrize("letter", list(LETTERS))
def test_every_wrong_bottleneck_is_caught_without_naming_the_answer(letter: str) -> None:
    key = answer_key()
    right_bottleneck, right_fix = key[letter]
    for wrong in BOTTLENECKS:
        if wrong == right_bottleneck:
            continue
        message = _fails({**key, letter: (wrong, right_fix)})
        assert message.startswith(f"server {letter}: {wrong!r} is not what report {letter} shows"), message
        assert right_bottleneck not in message and right_fix not in message, message


@pytest.mark.parametrize("letter", list(LETTERS))
def test_every_wrong_fix_is_caught_without_naming_the_answer(letter: str) -> None:
    key = answer_key()
    right_bottleneck, right_fix = key[letter]
    for wrong in FIXES:
        if wrong == right_fix:
            continue
        message = _fails({**key, letter: (right_bottleneck, wrong)})
        assert message.startswith(f"server {letter}: the bottleneck is right, but {wrong!r}"), message
        assert right_fix not in message, message


def _quoted(text: str) -> list[str]:
    """The report rows a hint quotes: 'text' not part of a word (an apostrophe in "prompt's" is not one)."""
    return re.findall(r"(?<![\w])'([^']+?(?:'s [^']+?)?)'(?![\w])", text)


def test_hints_quote_rows_of_their_own_report() -> None:
    reports = {LETTERS[letter]: report for letter, report in diagnosis.scenario_reports().items()}
    hints = [(kind, text) for kind, text in checks.BOTTLENECK_HINTS.items()]
    hints += [(kind, text) for kind, text in checks.FIX_HINTS.items()]
    hints += [(kind, text) for (kind, _), text in checks.WRONG_BOTTLENECK_NOTES.items()]
    hints += [(kind, text) for (kind, _), text in checks.WRONG_FIX_NOTES.items()]
    assert all(_quoted(text) for text in checks.BOTTLENECK_HINTS.values())
    for kind, text in hints:
        for row in _quoted(text):
            assert row in reports[kind].text(), (kind, row)
        bottleneck, fix = diagnosis._ANSWERS[kind]
        assert bottleneck not in text and fix not in text, text


def test_notes_are_for_wrong_labels_from_the_menus() -> None:
    for (kind, label), _ in checks.WRONG_BOTTLENECK_NOTES.items():
        assert label in BOTTLENECKS and label != diagnosis._ANSWERS[kind][0]
    for (kind, label), _ in checks.WRONG_FIX_NOTES.items():
        assert label in FIXES and label != diagnosis._ANSWERS[kind][1]


def test_visible_tests_check_the_shape_and_report_a_only(capsys) -> None:
    key = answer_key()
    wrong_b = {**key, "B": key["C"]}  # B wrong: the visible tests pass, the hidden ones do not
    checks.diagnoses_visible(lambda: dict(wrong_b))
    assert "visible tests passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="server B"):
        checks.diagnoses_hidden(lambda: dict(wrong_b))
    wrong_a = {**key, "A": key["C"]}
    with pytest.raises(AssertionError, match="server A"):
        checks.diagnoses_visible(lambda: dict(wrong_a))
    with pytest.raises(AssertionError, match="is not one of the labels in FIXES"):
        checks.diagnoses_visible(lambda: {**key, "D": (key["D"][0], "more GPUs")})


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({**answer_key(), "E": answer_key()["A"]}, "no report's letter"),
        ({**answer_key(), "A": (*answer_key()["A"], "extra")}, "must be a pair"),
        ({**answer_key(), "A": answer_key()["A"][0]}, "must be a pair"),
        ({**answer_key(), "C": (None, answer_key()["C"][1])}, "must be a label (a str)"),
        ({**answer_key(), "C": (answer_key()["C"][0], 5)}, "FIXES[5]"),
        ({1: answer_key()["A"]}, "missing the letter"),
    ],
)
def test_shape_mistakes_are_named(answer: dict, words: str) -> None:
    assert words in _fails(answer)


def test_labels_match_ignoring_case_and_spacing() -> None:
    key = answer_key()
    shouted = {letter: (b.upper(), "  " + f.replace(" ", "   ")) for letter, (b, f) in key.items()}
    run_exercise(NOTEBOOK, GID, _source(shouted))


def test_a_different_answer_on_the_second_call_fails() -> None:
    key = answer_key()
    source = (
        f"KEY = {key!r}\nCALLS = []\n"
        "def diagnoses() -> dict:\n"
        "    CALLS.append(1)\n"
        "    if len(CALLS) > 2:\n"
        "        return {**KEY, 'A': KEY['B']}\n"
        "    return dict(KEY)\n"
    )
    # the visible tests call once, the hidden ones twice: the third call answers differently
    assert "different answer when called a second time" in _fails(source)


@pytest.mark.parametrize(
    "source",
    [
        "from kvlib.serve.diagnosis import answer_key\n\n"
        "def diagnoses() -> dict:\n    return dict(answer_key())\n",
        "import kvlib.serve.diagnosis as d\n\ndef diagnoses() -> dict:\n"
        "    return {k: tuple(v) for k, v in d.answer_key().items()}\n",
        "from kvlib.serve.diagnosis import BOTTLENECKS, FIXES, explanations\n\n"
        "def diagnoses() -> dict:\n"
        "    out = {}\n"
        "    for letter, text in explanations().items():\n"
        "        head = text.split(chr(10))[0]\n"
        "        bottleneck = next(b for b in BOTTLENECKS if b in head)\n"
        "        out[letter] = (bottleneck, next(f for f in FIXES if f in head))\n"
        "    return out\n",
    ],
    ids=["key", "key-through-module", "parsed-explanations"],
)
def test_handing_in_kvlibs_key_scores_zero(source: str) -> None:
    assert "delegates to kvlib" in _fails(source)


def test_checks_run_no_simulation() -> None:
    diagnosis._reports.cache_clear()
    key = answer_key()
    started = time.perf_counter()
    checks.diagnoses_visible(lambda: dict(key))
    checks.diagnoses_hidden(lambda: dict(key))
    assert time.perf_counter() - started < 2.0
    assert diagnosis._reports.cache_info().currsize == 0
