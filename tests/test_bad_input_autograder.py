"""Bad input to `python -m autograder` and its library: exit 2 and one line, no traceback, no wrong grade.

CLI cases run `autograder.__main__.main` in-process and stop before any kernel starts. The few
cases that need a kernel (a cap too small to start it, a setup cell out of memory) build tiny
notebooks so that each runs in a few seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from bad_input import Case, CliCase, assert_clear_error, assert_cli_error, params, run_cli
from conftest import COURSE, SOLUTIONS
from nbformat.v4 import new_code_cell, new_notebook

from autograder import notebook as nbk
from autograder.__main__ import MIN_MEMORY_MB, main
from autograder.classroom import find_submitted, grade_submissions
from autograder.grading import check_notebook, grade
from autograder.kernel import GradingKernel, KernelUnavailable
from autograder.release import CHAPTER_NAME, make_course_dir, release

pytestmark = pytest.mark.autograder

BAD = "/tmp/kvcourse-bad-input"  # the CLI tables need fixed paths; the fixture below fills them in


def _write_bad_inputs(root) -> None:
    """Every kind of wrong file a learner or an instructor could point the CLI at."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "folder" / "00_setup.ipynb").mkdir(parents=True, exist_ok=True)
    (root / "00_setup.txt").write_bytes((COURSE / "00_setup.ipynb").read_bytes())
    (root / "not_json").mkdir(exist_ok=True)
    (root / "not_json" / "00_setup.ipynb").write_text("hello\n")
    (root / "json").mkdir(exist_ok=True)
    (root / "json" / "00_setup.ipynb").write_text('{"a": 1}\n')
    bad_cell = {"id": "c1", "cell_type": "code", "source": 5, "metadata": {}, "outputs": []}
    bad_cell["execution_count"] = None
    invalid = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [bad_cell]}
    (root / "invalid").mkdir(exist_ok=True)
    (root / "invalid" / "00_setup.ipynb").write_text(json.dumps(invalid))
    (root / "my_notes.ipynb").write_bytes((COURSE / "00_setup.ipynb").read_bytes())
    (root / "other_chapter").mkdir(exist_ok=True)  # chapter 02 saved under chapter 01's name
    (root / "other_chapter" / "01_naive_cache.ipynb").write_bytes((COURSE / "02_memory.ipynb").read_bytes())
    emptied = nbformat.read(COURSE / "01_naive_cache.ipynb", as_version=4)
    emptied.cells = []
    (root / "emptied").mkdir(exist_ok=True)
    nbformat.write(emptied, root / "emptied" / "01_naive_cache.ipynb")
    (root / "a_file").write_text("not a folder\n")
    (root / "nonempty").mkdir(exist_ok=True)
    (root / "nonempty" / "keep.txt").write_text("an existing course\n")
    (root / "course_no_submitted").mkdir(exist_ok=True)
    (root / "exchange_private").mkdir(exist_ok=True)
    (root / "exchange_private").chmod(0o755)  # what mkdir gives: students could not write there
    (root / "course_empty" / "submitted").mkdir(parents=True, exist_ok=True)
    (root / "with_submission" / "submitted" / "alice" / "00_setup").mkdir(parents=True, exist_ok=True)
    (root / "unknown_assignment" / "submitted" / "alice" / "99_nope").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module", autouse=True)
def bad_inputs():
    _write_bad_inputs(Path(BAD))
    return Path(BAD)


MEMORY = ("--memory-mb", str(MIN_MEMORY_MB), "6144")
NB = f"{BAD}/00_setup.txt"
CHECKABLE = str(COURSE / "00_setup.ipynb")

CLI_CASES = [
    CliCase("check-memory-negative", ["check", "--memory-mb", "-5", CHECKABLE], (*MEMORY, "-5")),
    CliCase("check-memory-one", ["check", "--memory-mb", "1", CHECKABLE], (*MEMORY, "got 1")),
    CliCase("check-memory-zero", ["check", "--memory-mb", "0", CHECKABLE], (*MEMORY, "got 0")),
    CliCase("check-memory-below-floor", ["check", "--memory-mb", "512", CHECKABLE], (*MEMORY, "512")),
    CliCase("check-memory-text", ["check", "--memory-mb", "lots", CHECKABLE], (*MEMORY, "lots")),
    CliCase("check-memory-float", ["check", "--memory-mb", "2048.5", CHECKABLE], (*MEMORY, "2048.5")),
    CliCase("check-missing-file", ["check", f"{BAD}/nope/00_setup.ipynb"], ("no such notebook", "nope")),
    CliCase("check-folder", ["check", f"{BAD}/folder/00_setup.ipynb"], ("notebook", "folder")),
    CliCase("check-not-ipynb", ["check", NB], (".ipynb", "00_setup.txt")),
    CliCase(
        "check-not-json", ["check", f"{BAD}/not_json/00_setup.ipynb"], ("not a valid .ipynb", "not_json")
    ),
    CliCase("check-json-not-notebook", ["check", f"{BAD}/json/00_setup.ipynb"], ("not a jupyter notebook",)),
    CliCase("check-nbformat-invalid", ["check", f"{BAD}/invalid/00_setup.ipynb"], ("not a valid jupyter",)),
    CliCase(
        "check-unknown-chapter",
        ["check", f"{BAD}/my_notes.ipynb"],
        ("no instructor notebook named", "my_notes.ipynb", "01_naive_cache.ipynb"),
    ),
    CliCase(
        "check-other-chapter-under-this-name",
        ["check", f"{BAD}/other_chapter/01_naive_cache.ipynb"],
        (
            "does not look like 01_naive_cache",
            "exercise cells missing",
            "ex1_causal_attention",
            "ex4_compare",
        ),
    ),
    CliCase(
        "check-every-cell-deleted",
        ["check", f"{BAD}/emptied/01_naive_cache.ipynb"],
        ("does not look like 01_naive_cache", "exercise cells missing", "ex2_naive_cache"),
    ),
    CliCase("mutants-unknown-notebook", ["mutants", "nope.ipynb"], ("no such notebook", "nope.ipynb")),
    CliCase("mutants-not-ipynb", ["mutants", NB], (".ipynb",)),
    CliCase("grade-missing-folder", ["grade", f"{BAD}/nothere"], ("no such folder", "nothere")),
    CliCase("grade-no-submitted", ["grade", f"{BAD}/course_no_submitted"], ("submitted/",)),
    CliCase("grade-empty-submitted", ["grade", f"{BAD}/course_empty"], ("no submissions", "<student>")),
    CliCase(
        "grade-out-is-a-file",
        ["grade", f"{BAD}/course_empty", "--out", f"{BAD}/a_file"],
        ("--out", "folder", "a_file"),
    ),
    CliCase(
        "grade-course-dir-is-a-file",
        ["grade", f"{BAD}/with_submission", "--out", f"{BAD}/grades", "--course-dir", f"{BAD}/a_file"],
        ("--course-dir", "folder", "a_file"),
    ),
    CliCase(
        "grade-unknown-assignment",
        ["grade", f"{BAD}/unknown_assignment", "--out", f"{BAD}/grades"],
        ("unknown assignments", "99_nope"),
    ),
    CliCase("instructor-onto-a-file", ["instructor", f"{BAD}/a_file"], ("a_file", "is a file")),
    CliCase("instructor-onto-nonempty", ["instructor", f"{BAD}/nonempty"], ("nonempty", "not empty")),
    CliCase("grade-jobs-zero", ["grade", f"{BAD}/course_empty", "--jobs", "0"], ("--jobs", ">= 1", "'0'")),
    CliCase(
        "grade-jobs-text", ["grade", f"{BAD}/course_empty", "--jobs", "all"], ("--jobs", ">= 1", "'all'")
    ),
    CliCase(
        "instructor-exchange-missing",
        ["instructor", f"{BAD}/new_course", "--exchange", f"{BAD}/no_exchange"],
        ("--exchange", "no such folder", "sudo mkdir -p", "chmod 777"),
    ),
    CliCase(
        "instructor-exchange-not-shared",
        ["instructor", f"{BAD}/new_course", "--exchange", f"{BAD}/exchange_private"],
        ("--exchange", "755", "needs 777", "chmod 777"),
    ),
    CliCase(
        "instructor-course-id-with-a-slash",
        ["instructor", f"{BAD}/new_course", "--course-id", "kv/2026"],
        ("--course-id", "folder name", "'kv/2026'"),
    ),
    CliCase("release-out-is-a-file", ["release", "--out", f"{BAD}/a_file"], ("--out", "folder", "a_file")),
]


@pytest.mark.parametrize("case", params(CLI_CASES))
def test_cli_error(case):
    assert_cli_error(main, case)


def test_cli_errors_print_one_line_after_usage():
    """argparse prints a usage block then one error line; our own errors print only that line."""
    _, _, err = run_cli(main, ["instructor", f"{BAD}/a_file"])
    assert len(err.strip().splitlines()) == 1, err
    _, _, err = run_cli(main, ["check", f"{BAD}/emptied/01_naive_cache.ipynb"])
    assert len(err.strip().splitlines()) == 1, err


def test_instructor_onto_nonempty_folder_changes_nothing(bad_inputs):
    before = sorted((p.name, p.read_bytes()) for p in (bad_inputs / "nonempty").rglob("*") if p.is_file())
    assert_cli_error(main, CliCase("again", ["instructor", str(bad_inputs / "nonempty")], ("not empty",)))
    after = sorted((p.name, p.read_bytes()) for p in (bad_inputs / "nonempty").rglob("*") if p.is_file())
    assert before == after


def test_wrong_notebook_is_refused_before_any_kernel_starts(bad_inputs):
    started = time.monotonic()
    assert_cli_error(main, CliCase("fast", ["check", str(bad_inputs / "emptied" / "01_naive_cache.ipynb")]))
    assert time.monotonic() - started < 3, "the notebook was run before being refused"


# ---------------------------------------------------------------- the library under the commands


def _pair(names=("a", "b"), setup=("x0 = 1",)):
    """An instructor notebook with one-point exercises that double their input."""
    cells = [new_code_cell(source) for source in setup]
    for name in names:
        sol = {"solution": True, "grade": False, "locked": False, "grade_id": name, "schema_version": 3}
        test = {"grade": True, "solution": False, "locked": True, "points": 1, "grade_id": f"{name}_test"}
        cells.append(new_code_cell(f"def {name}(x):\n    return 2 * x\n", metadata={"nbgrader": sol}))
        cells.append(
            new_code_cell(
                f"assert {name}(3) == 6, '{name} must double its input'",
                metadata={"nbgrader": {**test, "schema_version": 3}},
            )
        )
    return new_notebook(cells=cells, metadata={"kvlib": {"cell_timeout_s": 20}})


LIB_CASES = [
    Case("read-folder", lambda: nbk.read(SOLUTIONS), nbk.NotebookError, ("folder", ".ipynb")),
    Case(
        "read-missing",
        lambda: nbk.read(SOLUTIONS / "99_nope.ipynb"),
        nbk.NotebookError,
        ("no such notebook",),
    ),
    Case(
        "read-nbformat-invalid",
        lambda: nbk.read(f"{BAD}/invalid/00_setup.ipynb"),
        nbk.NotebookError,
        ("not a valid jupyter notebook", "invalid/00_setup.ipynb"),
    ),
    Case(
        "grade-wrong-notebook",
        lambda: grade(_pair(), _pair(names=("c",)), "07_x.ipynb", SOLUTIONS),
        nbk.WrongNotebook,
        ("does not look like 07_x", "exercise cells missing: a, b", "its exercise cells are c"),
    ),
    Case(
        "grade-memory-negative",
        lambda: grade(_pair(), _pair(), "x.ipynb", SOLUTIONS, memory_mb=-5),
        ValueError,
        ("memory_mb", ">= 1", "-5"),
    ),
    Case(
        "grade-memory-float",
        lambda: grade(_pair(), _pair(), "x.ipynb", SOLUTIONS, memory_mb=4.5),
        TypeError,
        ("memory_mb", "integer", "4.5"),
    ),
    Case(
        "kernel-memory-zero", lambda: GradingKernel(SOLUTIONS, memory_mb=0), ValueError, ("memory_mb", ">= 1")
    ),
    Case("kernel-run-unstarted", lambda: GradingKernel(SOLUTIONS).run("1"), RuntimeError, ("start()",)),
    Case(
        "release-onto-file",
        lambda: release(f"{BAD}/a_file"),
        NotADirectoryError,
        ("release folder", "a_file"),
    ),
    Case(
        "course-dir-onto-file",
        lambda: make_course_dir(f"{BAD}/a_file"),
        NotADirectoryError,
        ("course folder", "a_file"),
    ),
    Case(
        "grades-out-onto-file",
        lambda: grade_submissions(f"{BAD}/with_submission", f"{BAD}/a_file"),
        NotADirectoryError,
        ("grades folder", "--out", "a_file"),
    ),
    Case("find-submitted-missing", lambda: find_submitted(f"{BAD}/nothere"), FileNotFoundError, ("nothere",)),
]


@pytest.mark.parametrize("case", params(LIB_CASES))
def test_clear_error(case):
    assert_clear_error(case)


def test_sandbox_kernel_refuses_a_bad_cap_from_the_environment(monkeypatch):
    from autograder.sandbox_kernel import cap_memory

    for text in ("-5", "0", "lots", "4.5"):
        monkeypatch.setenv("KVCOURSE_GRADER_MEMORY_MB", text)
        with pytest.raises(SystemExit, match="KVCOURSE_GRADER_MEMORY_MB must be an integer"):
            cap_memory()


def test_release_deletes_stale_chapters_only():
    """release removes a chapter notebook the solutions no longer have, never a user's other files."""
    assert CHAPTER_NAME.match("09_removed_chapter.ipynb")
    for name in ("my_notes.ipynb", "01_naive_cache-Copy1.ipynb", "notes.txt", "1_x.ipynb"):
        assert not CHAPTER_NAME.match(name), name


# ---------------------------------------------------------------- cases that start a kernel (slow)


def test_cap_too_small_to_start_the_kernel_is_not_a_score(tmp_path):
    learner = tmp_path / "00_setup.ipynb"
    learner.write_bytes((SOLUTIONS / "00_setup.ipynb").read_bytes())
    with pytest.raises(KernelUnavailable) as info:
        check_notebook(learner, SOLUTIONS / "00_setup.ipynb", memory_mb=128)
    message = str(info.value)
    assert "\n" not in message
    for words in ("could not start", "128 MiB", "--memory-mb", "6144"):
        assert words in message, message


def test_setup_cell_out_of_memory_before_learner_code_is_not_a_score(tmp_path):
    """The instructor's setup needs more than the cap: say so (exit 2 in the CLI), grade nothing."""
    instructor = _pair(setup=("big = bytearray(3000 * 2**20)",))
    with pytest.raises(KernelUnavailable) as info:
        grade(instructor, _pair(), "x.ipynb", tmp_path, memory_mb=2048)
    for words in ("ran out of memory", "setup cell", "before any of your code", "2048 MiB", "--memory-mb"):
        assert words in str(info.value), info.value


def test_learner_hog_and_deleted_exercise_grade_the_rest(tmp_path):
    """After learner code ran, an out-of-memory setup cell is a warning (the learner may hold the
    memory) and grading goes on; an exercise cell the learner deleted scores 0 saying so."""
    instructor = _pair(names=("a", "b", "c"))
    instructor.cells.insert(3, new_code_cell("setup_after_a = bytearray(800 * 2**20)"))
    learner = _pair(names=("a", "b", "c"))
    learner.cells[1].source = "hog = bytearray(1000 * 2**20)\n\ndef a(x):\n    return 2 * x\n"
    del learner.cells[5:7]  # exercise c: solution and test cells deleted
    report = grade(instructor, learner, "x.ipynb", tmp_path, memory_mb=2048)
    scores = {e.grade_id: (e.score, e.message) for e in report.exercises}
    assert scores["a"][0] == 1 and scores["b"][0] == 1, scores
    assert scores["c"][0] == 0 and "no exercise cell 'c'" in scores["c"][1], scores
    assert any("out of memory" in error for error in report.setup_errors), report.setup_errors
