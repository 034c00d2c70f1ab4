"""The grader: full marks for solutions, zero for the release, hostile notebooks, mutants, classroom flow."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from conftest import COURSE, REPO, SOLUTIONS, solution_notebooks
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder import notebook as nbk
from autograder.classroom import grade_submissions, make_submission, read_grades_csv
from autograder.grading import check_notebook, grade
from autograder.kernel import SPEC_PREFIX
from autograder.mutation import MIN_MUTANTS_PER_EXERCISE, catalog, run_mutants, summarize
from autograder.paths import mutants_dir

pytestmark = pytest.mark.autograder


@pytest.mark.slow
@pytest.mark.parametrize("path", solution_notebooks(), ids=lambda p: p.stem)
def test_solutions_score_full_marks(path):
    report = check_notebook(path, path)
    print(f"\ncheck {path.name}: {report.score:g}/{report.max_score:g} in {report.seconds:.1f} s")
    failures = [(e.grade_id, e.message) for e in report.exercises if e.score < e.max_score]
    assert not failures, failures
    assert report.max_score > 0
    # grading skips display-only cells: nothing the remaining setup cells need may live in them
    assert not report.setup_errors, report.setup_errors


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(COURSE.glob("*.ipynb")), ids=lambda p: p.stem)
def test_released_notebooks_score_zero(path):
    report = check_notebook(path, SOLUTIONS / path.name)
    print(f"\ncheck course/{path.name}: {report.score:g}/{report.max_score:g} in {report.seconds:.1f} s")
    assert report.score == 0 and report.max_score > 0
    for exercise in report.exercises:
        assert "not implemented" in exercise.message, exercise


@pytest.mark.slow
@pytest.mark.parametrize("path", solution_notebooks(), ids=lambda p: p.stem)
def test_every_mutant_is_killed(path):
    files = catalog(path, mutants_dir())
    too_few = {e: len(p) for e, p in files.items() if len(p) < MIN_MUTANTS_PER_EXERCISE}
    assert not too_few, f"exercises with fewer than {MIN_MUTANTS_PER_EXERCISE} mutants: {too_few}"
    import time

    started = time.monotonic()
    results = run_mutants(path, mutants_dir())
    print("\n" + "\n".join(summarize(path.name, results, files, time.monotonic() - started)))
    survivors = [(r.exercise, r.name, r.mistake) for r in results if not r.killed]
    assert not survivors, f"mutants survived the hidden tests: {survivors}"


# ---------------------------------------------------------------- hostile notebooks
# One instructor notebook with ten one-point exercises; the learner's copy misbehaves in a
# different way in each. Graded once (module fixture); each case is its own test.

GOOD = "def {name}(x):\n    return 2 * x\n"
TEST = (
    "assert {name}(3) == 6, '{name} must double its input'\nassert {name}(-1) == -2, 'negative inputs too'\n"
)

HOSTILE = {
    "good": GOOD.format(name="good"),
    "loop": "def loop(x):\n    while True:\n        pass\n",
    "bomb": "hog = []\nwhile True:\n    hog.append(bytes(2**30))\n",
    "sysexit": "import sys\nsys.exit(1)\n",
    "osexit": "import os\nos._exit(1)\n",
    "raises": "def raises(x):\n    return x / 0\n",
    # hands in kvlib's own implementation under the graded name: caught from what runs
    "kvlib": "from kvlib.generate import new_token_positions as kvlib\n",
    # mentions and imports kvlib but writes its own code: full marks (the rule is about what runs)
    "mentions_kvlib": (
        "import kvlib  # I compared with kvlib.generate afterwards\n\n"
        "def mentions_kvlib(x):\n    return 2 * x\n"
    ),
    "edited_test": "def edited_test(x):\n    return x\n",
    "deleted_test": "def deleted_test(x):\n    return x\n",
    # wrong answer + an attempt to switch the checks off before the test cell runs
    "patched": (
        "import torch\nimport autograder.checks.ch00 as c\nimport autograder.checks.common as cc\n"
        "c.positions_visible = c.positions_hidden = lambda fn: None\n"
        "cc.expect = lambda *a, **k: None\ntorch.equal = lambda *a, **k: True\n"
        "def patched(cache_len, n_new):\n    return torch.arange(n_new)\n"
    ),
}


def _solution(name: str, source: str):
    meta = {"solution": True, "grade": False, "locked": False, "grade_id": name, "schema_version": 3}
    return new_code_cell(source, metadata={"nbgrader": meta})


def _test(name: str, source: str, points: float = 1):
    meta = {"grade": True, "solution": False, "locked": True, "points": points, "grade_id": f"{name}_test"}
    return new_code_cell(source, metadata={"nbgrader": {**meta, "schema_version": 3}})


def _hostile_pair():
    cells = [
        new_markdown_cell("# Hostile\n\nWhat you will learn: -\n\nHow long it takes: -"),
        new_code_cell("x0 = 1"),
    ]
    learner_cells = list(cells)
    for name, bad in HOSTILE.items():
        if name in ("patched", "kvlib"):
            good = f"import torch\ndef {name}(c, n):\n    return torch.arange(c, c + n)"
            test = (
                "from autograder.harness import fresh\nchecks = fresh('ch00')\n"
                f"checks.positions_visible({name})\n### BEGIN HIDDEN TESTS\n"
                f"checks.positions_hidden({name})\n### END HIDDEN TESTS"
            )
        else:
            good, test = GOOD.format(name=name), TEST.format(name=name)
        cells += [_solution(name, good), _test(name, test)]
        learner_cells.append(_solution(name, bad))
        if name == "edited_test":
            learner_cells.append(_test(name, "pass  # tests removed by the learner", points=100))
        elif name != "deleted_test":
            learner_cells.append(_test(name, test, points=100 if name == "good" else 1))
    meta = {"kvlib": {"cell_timeout_s": 4}}
    return new_notebook(cells=cells, metadata=meta), new_notebook(cells=learner_cells, metadata=meta)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    instructor, learner = _hostile_pair()
    report = grade(instructor, learner, "hostile.ipynb", tmp_path_factory.mktemp("hostile"), memory_mb=3072)
    print(
        f"\nhostile notebook graded in {report.seconds:.1f} s with {report.kernel_restarts} kernel restart(s)"
    )
    for e in report.exercises:
        print(f"  {e.grade_id:<14} {e.score:g}/{e.max_score:g}  {e.message}")
    return {e.grade_id: e for e in report.exercises}


def test_hostile_each_exercise_scored_independently(hostile_report):
    assert set(hostile_report) == set(HOSTILE)
    for name in ("good", "mentions_kvlib"):
        assert hostile_report[name].score == 1, hostile_report[name]
    assert all(e.score == 0 for name, e in hostile_report.items() if name not in ("good", "mentions_kvlib"))


def test_hostile_edited_points_use_the_instructors_value(hostile_report):
    assert hostile_report["good"].max_score == 1


@pytest.mark.parametrize(
    "name, words",
    [
        ("loop", "did not finish"),
        ("bomb", "out of memory"),
        ("sysexit", "called sys.exit(1)"),
        ("osexit", "killed the kernel"),
        ("raises", "ZeroDivisionError"),
        ("kvlib", "delegates to kvlib"),
        ("edited_test", "must double"),
        ("deleted_test", "must double"),
        ("patched", "restart at 0"),
    ],
)
def test_hostile_case_gets_a_clear_message(hostile_report, name, words):
    assert words in hostile_report[name].message, hostile_report[name]


def test_a_setup_cell_failing_after_the_learners_sys_exit_is_not_called_not_your_code(tmp_path, monkeypatch):
    """A setup cell that uses an exercise's function fails when that exercise called sys.exit(): the
    warning points at the learner's cell, and says 'not your code' only when no learner cell failed."""
    instructor = new_notebook(
        cells=[
            _solution("a", GOOD.format(name="a")),
            _test("a", TEST.format(name="a")),
            new_code_cell("doubled = a(21)"),
        ]
    )
    learner = nbformat.from_dict(json.loads(json.dumps(instructor)))
    learner.cells[0].source = "import sys\nsys.exit(2)\n" + GOOD.format(name="a")
    # each grading kernel's private kernelspec folder is removed with it (grading a class made hundreds);
    # watched in a temp folder of this test's own: /tmp is shared with whatever else grades meanwhile
    private_tmp = Path(tempfile.mkdtemp(prefix="kvspec"))  # short: the kernel's ipc socket lives under it
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    report = grade(instructor, learner, "x.ipynb", tmp_path)
    monkeypatch.undo()
    assert not list(private_tmp.glob(f"{SPEC_PREFIX}*")), list(private_tmp.iterdir())
    private_tmp.rmdir()
    assert "called sys.exit(2)" in report.exercises[0].message, report.exercises
    (error,) = report.setup_errors
    assert "your cell 'a' failed before it" in error and "not your code" not in error, error
    instructor.cells[2].source = "1 / 0"
    report = grade(instructor, nbformat.from_dict(json.loads(json.dumps(instructor))), "x.ipynb", tmp_path)
    assert report.score == 1 and "not your code" in report.setup_errors[0], report.setup_errors


def test_malformed_notebook_is_named_and_exits_nonzero(tmp_path):
    broken = tmp_path / "00_setup.ipynb"
    broken.write_text((SOLUTIONS / "00_setup.ipynb").read_text()[:500])
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "check", str(broken)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert str(broken) in proc.stderr and "not a valid .ipynb" in proc.stderr


def test_check_json_output_and_exit_status(tmp_path):
    learner = tmp_path / "00_setup.ipynb"
    learner.write_bytes((COURSE / "00_setup.ipynb").read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "check", str(learner), "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["notebook"] == "00_setup.ipynb" and report["score"] == 0 and report["max_score"] > 0
    assert {"grade_id", "score", "max_score", "message"} <= set(report["exercises"][0])
    assert "BEGIN HIDDEN" not in proc.stdout and "positions_hidden" not in proc.stdout


def test_grading_cells_keep_learner_extras_and_restore_tests():
    instructor, learner = _hostile_pair()
    learner.cells.insert(3, new_code_cell("helper = 41"))
    plan = nbk.grading_cells(nbk.with_fixed_cell_ids(instructor), learner)
    kinds = [kind for kind, _ in plan]
    assert kinds.count("test") == len(HOSTILE) and "extra" in kinds
    tests = {nbk.grade_id(c): c.source for kind, c in plan if kind == "test"}
    assert "must double" in tests["edited_test_test"]


# ---------------------------------------------------------------- classroom flow


@pytest.mark.slow
def test_classroom_grade_two_students(tmp_path):
    make_submission(SOLUTIONS / "00_setup.ipynb", "alice", tmp_path)
    make_submission(COURSE / "00_setup.ipynb", "bob", tmp_path)
    grade_submissions(tmp_path, tmp_path / "out")
    rows = {r["student_id"]: r for r in read_grades_csv(tmp_path / "out" / "grades.csv")}
    assert float(rows["alice"]["score"]) == float(rows["alice"]["max_score"]) > 0
    assert float(rows["bob"]["score"]) == 0
    feedback = (tmp_path / "out" / "feedback" / "bob" / "00_setup.md").read_text()
    assert (
        "not implemented" in feedback
        and "BEGIN HIDDEN" not in feedback
        and "positions_hidden" not in feedback
    )


def test_instructor_course_dir_has_sources_and_config(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "instructor", str(tmp_path / "class")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "class" / "nbgrader_config.py").exists()
    for path in solution_notebooks():
        assert nbformat.read(tmp_path / "class" / "source" / path.stem / path.name, as_version=4).cells


def test_grading_skips_display_only_cells_but_keeps_learner_extras_after_them():
    timing = new_code_cell("slow_plot = 1", metadata={"kvlib": {"display_only": True}})
    instructor = nbk.with_fixed_cell_ids(
        new_notebook(
            cells=[
                new_code_cell("x0 = 1"),
                timing,
                _solution("a", GOOD.format(name="a")),
                _test("a", TEST.format(name="a")),
            ]
        )
    )
    learner = nbformat.from_dict(json.loads(json.dumps(instructor)))
    learner.cells.insert(2, new_code_cell("mine = 2"))  # the learner's own cell after the timing
    plan = [(kind, cell.source) for kind, cell in nbk.grading_cells(instructor, learner)]
    assert ("fixed", "slow_plot = 1") not in plan
    assert plan[:2] == [("fixed", "x0 = 1"), ("extra", "mine = 2")]
    assert [kind for kind, _ in plan[2:]] == ["solution", "test"]


def test_a_learner_file_without_setup_ids_runs_each_setup_cell_once(tmp_path):
    """A solutions/ notebook checked as a learner file has no fixed-cell ids: its setup cells must be
    recognised as the instructor's (run once, display-only ones skipped), not re-run as extras."""
    counter = "import builtins\nbuiltins.setup_runs = getattr(builtins, 'setup_runs', 0) + 1\n"
    cells = [
        new_code_cell(counter),
        new_code_cell(
            "raise RuntimeError('a display-only cell ran')", metadata={"kvlib": {"display_only": True}}
        ),
        _solution("a", GOOD.format(name="a")),
        _test(
            "a",
            "import builtins\nassert builtins.setup_runs == 1, f'setup ran {builtins.setup_runs} times'\n",
        ),
    ]
    instructor = new_notebook(cells=cells)
    learner = nbformat.from_dict(json.loads(json.dumps(instructor)))  # no fixed ids: like solutions/
    report = grade(instructor, learner, "ids.ipynb", tmp_path)
    assert report.score == 1, report.exercises
    assert not report.setup_errors
