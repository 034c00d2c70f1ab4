"""The classroom path (issue 19): one score for a submission whichever way it is graded, an nbgrader
exchange round trip with two students, no hidden-test source in any feedback, parallel grading.

`check` (the self-check), `python -m autograder grade` and nbgrader's own `autograde` run from the
course folder must agree on tampered submissions: a deleted or edited test cell, edited points, a
deleted setup cell, a `sys.exit()` in a solution.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import COURSE, REPO, SOLUTIONS

from autograder import notebook as nbk
from autograder.classroom import (
    OutdatedCourseConfig,
    grade_submissions,
    make_submission,
    read_grades_csv,
    require_no_hidden_tests,
    run_findings,
    submission_layout,
    tampering_findings,
    visible_text,
)
from autograder.grading import check_notebook
from autograder.nbgrader_grading import (
    HIDDEN_TESTS_NOTE,
    GradeLikeCheck,
    HideTestSource,
    TagRunAll,
    strip_hidden_tests,
)
from autograder.release import make_course_dir, nbgrader_env

pytestmark = pytest.mark.autograder

CH01 = "01_naive_cache"
MUTANTS = REPO / "autograder" / "mutants" / CH01


def run(args: list[str], cwd: Path, student: str | None = None) -> subprocess.CompletedProcess:
    """`python -m ARGS` in `cwd`; as `student`, through nbgrader's JupyterHub naming: on hubs whose
    containers all run as the OS user jovyan, nbgrader takes the student's name from JUPYTERHUB_USER.
    Each runs in its own home folder (`cwd`). Two real OS users would need root and a Python every user
    can run; the exchange code is the same."""
    env, cmd = nbgrader_env(), [sys.executable, "-m", *args]
    if (
        student is not None
    ):  # each student has a home of their own (nbgrader keeps its submission cache there)
        env.update(JUPYTERHUB_USER=student, HOME=str(cwd))
        env.pop("JUPYTER_DATA_DIR", None)
        as_jovyan = (
            "import sys, nbgrader.utils as u; u.get_osusername = lambda: 'jovyan'; "
            "from nbgrader.apps.nbgraderapp import main; sys.argv[0] = 'nbgrader'; main()"
        )
        cmd = [sys.executable, "-c", as_jovyan, *args[1:]]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def cell(nb: nbformat.NotebookNode, gid: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if nbk.grade_id(c) == gid)


def solve(nb: nbformat.NotebookNode, chapter: str = CH01) -> None:
    solutions = nbk.read(SOLUTIONS / f"{chapter}.ipynb")
    for c in nb.cells:
        if nbk.is_solution(c):
            c.source = cell(solutions, nbk.grade_id(c)).source


def wrong_ex1_test_deleted(nb):
    solve(nb)
    cell(nb, "ex1_causal_attention").source = (
        MUTANTS / "ex1_causal_attention/mask_without_offset.py"
    ).read_text()
    nb.cells.remove(cell(nb, "ex1_causal_attention_test"))


def wrong_ex2_test_edited_points_raised(nb):
    solve(nb)
    cell(nb, "ex2_naive_cache").source = (MUTANTS / "ex2_naive_cache/cat_head_axis.py").read_text()
    test = cell(nb, "ex2_naive_cache_test")
    test.source = "pass"
    test.metadata.nbgrader["points"] = 50


def exits_in_ex1_setup_cell_deleted(nb):
    solve(nb)
    exercise = cell(nb, "ex1_causal_attention")
    exercise.source = "import sys\nsys.exit(3)\n" + exercise.source
    nb.cells.remove(next(c for c in nb.cells if c.cell_type == "code"))


# student -> (edit of the released notebook, expected score out of 10, findings `grade` must print)
TAMPERING = {
    "alice": (solve, 10, []),
    "carol": (wrong_ex1_test_deleted, 8, ["test cell 'ex1_causal_attention_test' deleted"]),
    "dave": (
        wrong_ex2_test_edited_points_raised,
        8,
        ["test cell 'ex2_naive_cache_test' edited", "points edited to 50"],
    ),
    "erin": (exits_in_ex1_setup_cell_deleted, 8, ["deleted (restored for grading)", "sys.exit() called"]),
}


def hidden_only_lines(notebook: Path) -> list[str]:
    """Lines of the hidden-test regions that appear nowhere else in the notebook's test cells."""
    hidden, visible = set(), set()
    for c in nbk.read(notebook).cells:
        if nbk.is_test(c):
            inside = False
            for line in c.source.splitlines():
                inside = (inside or "BEGIN HIDDEN TESTS" in line) and "END HIDDEN TESTS" not in line
                (hidden if inside else visible).add(line.strip())
    return sorted(line for line in hidden - visible if len(line) > 12 and "HIDDEN TESTS" not in line)


def assert_no_hidden_source(files: list[Path], notebook: Path) -> None:
    hidden = hidden_only_lines(notebook)
    assert hidden, notebook  # the check below must have something to find
    for path in files:
        text = visible_text(path)
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{path} shows hidden-test source: {leaked[:3]}"


# ---------------------------------------------------------------- one score everywhere


@pytest.mark.slow
def test_tampering_scored_alike_by_check_grade_and_nbgrader(tmp_path):
    course = tmp_path / "course"
    make_course_dir(course)
    for student, (edit, _, _) in TAMPERING.items():
        make_submission(COURSE / f"{CH01}.ipynb", student, course, edit=edit)

    # 1. nbgrader's own commands, as an instructor types them in the course folder
    run(["nbgrader", "generate_assignment", CH01], course)
    log = run(["nbgrader", "autograde", CH01], course)
    log = log.stdout + log.stderr  # expected noise quieted by the course config, real edits kept
    assert "'checksum'" not in log and "not in session" not in log and "'points' for cell ex2" in log, log
    run(["nbgrader", "export", "--to", str(tmp_path / "nbgrader.csv")], course)
    by_nbgrader = {r["student_id"]: float(r["score"]) for r in read_grades_csv(tmp_path / "nbgrader.csv")}

    # 2. our command, in place, two submissions at a time
    proc = run(["autograder", "grade", str(course), "--jobs", "2"], REPO)
    grades = course / "grades"
    by_grade = {r["student_id"]: float(r["score"]) for r in read_grades_csv(grades / "grades.csv")}

    # 3. the self-check on each submitted file
    by_check = {}
    for student in TAMPERING:
        report = check_notebook(
            course / "submitted" / student / CH01 / f"{CH01}.ipynb", SOLUTIONS / f"{CH01}.ipynb"
        )
        by_check[student] = report.score
    expected = {student: float(score) for student, (_, score, _) in TAMPERING.items()}
    assert by_check == by_nbgrader == by_grade == expected, (by_check, by_nbgrader, by_grade)

    # one progress line per submission, then one line per finding under it; nbgrader's log stays out
    out = proc.stdout
    assert len(re.findall(rf"^\[\d/4\] \w+ +{CH01} ", out, flags=re.M)) == 4, out
    for student, (_, _, findings) in TAMPERING.items():
        block = out.split(f"] {student} ", 1)[1].split("\n[", 1)[0]
        for finding in findings:
            assert finding in block, (student, finding, out)
    assert "alice" in out and "INFO" not in out and "Warning" not in out, out

    # feedback: rows in notebook order, the sys.exit named, no hidden-test source in either path's files
    erin = (grades / "feedback" / "erin" / f"{CH01}.md").read_text()
    rows = re.findall(r"^\| (ex\d_\w+) \|", erin, flags=re.M)
    assert rows == ["ex1_causal_attention", "ex2_naive_cache", "ex3_generate", "ex4_compare"], erin
    assert "called sys.exit(3)" in erin, erin
    html_feedback = sorted((course / "feedback").glob(f"*/{CH01}/*.html"))
    assert len(html_feedback) == 4
    assert HIDDEN_TESTS_NOTE in visible_text(html_feedback[0])
    visible = [
        line.strip()
        for line in cell(nbk.read(COURSE / f"{CH01}.ipynb"), "ex1_causal_attention_test").source.splitlines()
    ]
    assert all(
        line in visible_text(html_feedback[0]) for line in visible if len(line) > 12
    )  # extraction works
    md_feedback = sorted(grades.glob("feedback/*/*.md"))
    assert_no_hidden_source(md_feedback + html_feedback, SOLUTIONS / f"{CH01}.ipynb")


@pytest.mark.slow
def test_exchange_round_trip_with_two_students(tmp_path):
    """release -> fetch -> submit (alice, bob) -> collect -> grade -> release_feedback -> fetch_feedback."""
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    course = tmp_path / "course"
    run(["autograder", "instructor", str(course), "--exchange", str(exchange)], REPO)
    run(["nbgrader", "generate_assignment", "00_setup"], course)
    run(["nbgrader", "release_assignment", "00_setup"], course)
    for student in ("alice", "bob"):
        home = tmp_path / student
        home.mkdir()
        (home / "nbgrader_config.py").write_text((course / "student_nbgrader_config.py").read_text())
        run(["nbgrader", "fetch_assignment", "00_setup"], home, student)
        fetched = nbk.read(home / "00_setup" / "00_setup.ipynb")  # tagged as course/ is: Run All goes on
        tests = [c for c in fetched.cells if nbk.is_test(c)]
        assert tests and all(nbk.RAISES_EXCEPTION in c.metadata.get("tags", []) for c in tests)
        if student == "alice":
            path = home / "00_setup" / "00_setup.ipynb"
            nb = nbformat.read(path, as_version=4)
            solve(nb, "00_setup")
            nbformat.write(nb, path)
        run(["nbgrader", "submit", "00_setup"], home, student)
    run(["nbgrader", "collect", "00_setup"], course)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["alice", "bob"]
    run(["autograder", "grade", str(course)], REPO)
    rows = {r["student_id"]: r for r in read_grades_csv(course / "grades" / "grades.csv")}
    assert float(rows["alice"]["score"]) == float(rows["alice"]["max_score"]) > 0
    assert float(rows["bob"]["score"]) == 0
    run(["nbgrader", "release_feedback", "00_setup"], course)
    run(["nbgrader", "fetch_feedback", "00_setup"], tmp_path / "bob", "bob")
    fetched = sorted((tmp_path / "bob" / "00_setup" / "feedback").glob("*/*.html"))
    assert len(fetched) == 1, fetched
    assert "not implemented" in visible_text(fetched[0])
    assert_no_hidden_source(fetched, SOLUTIONS / "00_setup.ipynb")


# ---------------------------------------------------------------- the pieces


def test_course_config_swaps_in_our_steps_and_they_are_enabled(tmp_path):
    """The pipelines nbgrader builds from the course config: our grading instead of Execute, tagging at
    release, hidden tests cut from feedback. nbconvert registers plain preprocessors disabled: ours
    would then leave every test cell without an error, which nbgrader scores as full marks (a released
    notebook got 10/10 that way), so they must be enabled by default."""
    from traitlets.config.loader import PyFileConfigLoader

    make_course_dir(tmp_path)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    names = {
        key: [step if isinstance(step, str) else step.__name__ for step in steps]
        for key, steps in (
            ("autograde", config.Autograde.autograde_preprocessors),
            ("release", config.GenerateAssignment.preprocessors),
            ("feedback", config.GenerateFeedback.preprocessors),
        )
    }
    assert "Execute" not in names["autograde"] and names["autograde"][0].endswith(".GradeLikeCheck")
    assert "SaveAutoGrades" in names["autograde"] and "ClearHiddenTests" in names["release"]
    assert names["release"][-1].endswith(".TagRunAll") and names["feedback"][-1].endswith(".HideTestSource")
    assert GradeLikeCheck().enabled and HideTestSource().enabled and TagRunAll().enabled


def test_strip_hidden_tests_keeps_the_visible_part_and_the_indent():
    source = (
        "a = 1\nif True:\n    ### BEGIN HIDDEN TESTS\n    secret()\n    ### END HIDDEN TESTS\n    b = 2\n"
    )
    assert strip_hidden_tests(source) == f"a = 1\nif True:\n    {HIDDEN_TESTS_NOTE}\n    b = 2"
    unterminated = "x\n### BEGIN HIDDEN TESTS\nsecret()\n"
    assert "secret" not in strip_hidden_tests(unterminated)


def _released(chapter: str = CH01) -> nbformat.NotebookNode:
    return nbk.read(COURSE / f"{chapter}.ipynb")


def test_tampering_findings_name_each_change_once():
    released = _released()
    assert tampering_findings(released, _released()) == []
    submitted = _released()
    wrong_ex2_test_edited_points_raised(submitted)
    findings = tampering_findings(released, submitted)
    assert len(findings) == 2 and "edited" in findings[0] and "points edited to 50" in findings[1], findings
    submitted = _released()
    exits_in_ex1_setup_cell_deleted(submitted)
    assert [f.split(" ")[0] for f in tampering_findings(released, submitted)] == ["setup"]


def test_run_findings_read_the_graded_outputs():
    graded = _released()
    errors = {
        "ex1_causal_attention": "SystemExit",
        "ex2_naive_cache": "KernelDied",
        "ex3_generate": "Timeout",
    }
    for gid, ename in errors.items():
        cell(graded, gid).outputs = [nbformat.v4.new_output("error", ename=ename, evalue="", traceback=[])]
    findings = run_findings(graded)
    assert len(findings) == 3 and "sys.exit" in findings[0] and "kernel exited" in findings[1]
    assert "timeout" in findings[2]


def test_setup_cells_without_ids_are_not_reported_deleted():
    """An editor that drops cell metadata leaves setup cells without ids; grading finds them by source."""
    submitted = _released()
    for c in submitted.cells:
        if c.cell_type == "code" and not (nbk.is_solution(c) or nbk.is_test(c)):
            c.metadata.pop("nbgrader", None)
    assert tampering_findings(_released(), submitted) == []


def test_submission_layout_names_every_folder_it_cannot_grade(tmp_path):
    root = tmp_path / "course"
    make_course_dir(root)
    submitted = root / "submitted"
    for student, name in [("ann", "00_setup"), ("ben", "my_setup"), ("cat", None)]:
        folder = submitted / student / "00_setup"
        folder.mkdir(parents=True)
        if name:
            (folder / f"{name}.ipynb").write_text("{}")
    (submitted / "dan").mkdir()
    (submitted / "eve").mkdir()
    (submitted / "eve" / "00_setup.ipynb").write_text("{}")
    pairs, problems = submission_layout(root, submitted)
    assert pairs == [("ann", "00_setup")]
    said = dict(problems)
    assert "found my_setup.ipynb; rename it" in said["ben"] and "00_setup.ipynb" in said["ben"]
    assert "no notebook in it" in said["cat"] and "no assignment folder" in said["dan"]
    assert "not in an assignment folder" in said["eve"], said


def test_an_outdated_course_config_is_refused_before_grading(tmp_path):
    """A course folder made before grading moved into nbgrader's pipeline would score by nbgrader's rules
    and put hidden tests in feedback: refused, with the command that fixes it."""
    course = tmp_path / "course"
    make_course_dir(course)
    make_submission(COURSE / "00_setup.ipynb", "ann", course)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'kv-cache-course'\nc.Execute.timeout = 60\n"
    )
    with pytest.raises(OutdatedCourseConfig, match="lacks GradeLikeCheck, HideTestSource.*cp "):
        grade_submissions(course)
    assert not (course / "grades").exists() and not (course / "autograded").exists()


def test_feedback_showing_hidden_tests_is_deleted_and_reported(tmp_path):
    leaky, clean = tmp_path / "a" / "x.html", tmp_path / "b" / "x.html"
    for path, text in ((leaky, "<span>### BEGIN HIDDEN TESTS</span>"), (clean, "<p>0 / 1</p>")):
        path.parent.mkdir()
        path.write_text(text)
    with pytest.raises(RuntimeError, match="1 feedback file"):
        require_no_hidden_tests(tmp_path)
    assert not leaky.exists() and clean.exists()


@pytest.mark.slow
def test_one_broken_submission_does_not_stop_the_class(tmp_path):
    """A notebook nbformat's validator rejects (nbgrader grades it), a misnamed one, a stray one: the first
    is graded, the others are reported NOT GRADED by name, every student is in the CSV, exit status 1."""
    course = tmp_path / "course"
    make_course_dir(course)
    odd = make_submission(COURSE / "00_setup.ipynb", "ann", course)
    raw = json.loads(odd.read_text())
    raw["cells"][0]["unexpected_key"] = 1
    odd.write_text(json.dumps(raw))
    misnamed = make_submission(COURSE / "00_setup.ipynb", "ben", course)
    misnamed.rename(misnamed.with_name("my_setup.ipynb"))
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(course / "submitted")],
        cwd=REPO,
        env=nbgrader_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"\] ann +00_setup +0/1", proc.stdout), proc.stdout
    assert "NOT GRADED: ben: 00_setup/ lacks 00_setup.ipynb (found my_setup.ipynb; rename it)" in proc.stdout
    rows = {r["student_id"]: float(r["score"]) for r in read_grades_csv(course / "grades" / "grades.csv")}
    assert rows == {"ann": 0.0, "ben": 0.0}, rows
    graded = nbformat.read(course / "autograded" / "ann" / "00_setup" / "00_setup.ipynb", as_version=4)
    counts = [c.execution_count for c in graded.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), counts  # feedback shows In [n], as after a real run
