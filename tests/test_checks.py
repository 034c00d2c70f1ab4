"""Every graded exercise of every notebook, graded in-process exactly as its test cell grades it.

For each exercise: the instructor's solution passes (quickly), the released stub fails with "not
implemented", every mutant in autograder/mutants/ fails with a message containing its EXPECT line,
and each way of handing in kvlib's own implementation (alias, subclass, wrapper, a name imported by
a setup cell) scores 0 with a message that says why. Chapter-specific cases live in
tests/test_chNN_checks.py.
"""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path

import pytest

from autograder.harness import grading_cell_source, run_exercise, solution_sources
from autograder.mutation import MIN_MUTANTS_PER_EXERCISE, parse_header

pytestmark = pytest.mark.autograder

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "solutions").glob("[0-9][0-9]_*.ipynb"))
MUTANTS = REPO / "autograder" / "mutants"
CORRECT = REPO / "autograder" / "correct"


def _exercises() -> list:
    return [
        pytest.param(nb, gid, id=f"{nb.stem}/{gid}", marks=getattr(pytest.mark, f"ch{nb.stem[:2]}"))
        for nb in NOTEBOOKS
        for gid in solution_sources(nb)
    ]


def _catalog(root: Path) -> list:
    """(notebook, grade_id, file) for every source in a catalog laid out as root/<notebook>/<grade_id>/."""
    return [
        pytest.param(
            nb, gid, path, id=f"{nb.stem}/{gid}/{path.stem}", marks=getattr(pytest.mark, f"ch{nb.stem[:2]}")
        )
        for nb in NOTEBOOKS
        for gid in solution_sources(nb)
        for path in sorted((root / nb.stem / gid).glob("*.py"))
    ]


def _graded(notebook: Path, grade_id: str) -> tuple[str, str, str]:
    """(chapter module, hidden check name, graded name) from the test cell's source."""
    source = grading_cell_source(notebook, grade_id)
    chapter = re.search(r'fresh\("(\w+)"\)', source).group(1)
    hidden, name = re.search(r"checks\.(\w+_hidden)\((\w+)\)", source).groups()
    return chapter, hidden, name


def _defines_class(solution: str, name: str) -> bool:
    return re.search(rf"^class {name}\b", solution, re.M) is not None


def _fails_with(notebook: Path, grade_id: str, source: str) -> str:
    with pytest.raises(AssertionError) as info:
        run_exercise(notebook, grade_id, source)
    assert type(info.value).__name__ == "CheckFailed", repr(info.value)
    return str(info.value)


@pytest.mark.parametrize(("notebook", "grade_id"), _exercises())
def test_solution_passes_visible_and_hidden_tests_quickly(notebook: Path, grade_id: str, capsys) -> None:
    started = time.perf_counter()
    run_exercise(notebook, grade_id)
    assert time.perf_counter() - started < 30  # a few seconds normally; generous for a loaded 2-core machine
    assert "hidden tests passed" in capsys.readouterr().out


@pytest.mark.parametrize(("notebook", "grade_id"), _exercises())
def test_released_stub_fails_with_not_implemented(notebook: Path, grade_id: str) -> None:
    solution = solution_sources(notebook)[grade_id]
    _, _, name = _graded(notebook, grade_id)
    source = (
        f"class {name}:\n    def __init__(self, *a, **k):\n        raise NotImplementedError()\n"
        if _defines_class(solution, name)
        else f"def {name}(*a, **k):\n    raise NotImplementedError()\n"
    )
    assert "not implemented" in _fails_with(notebook, grade_id, source)


@pytest.mark.parametrize(("notebook", "grade_id"), _exercises())
def test_enough_mutants(notebook: Path, grade_id: str) -> None:
    assert len(list((MUTANTS / notebook.stem / grade_id).glob("*.py"))) >= MIN_MUTANTS_PER_EXERCISE


@pytest.mark.parametrize(("notebook", "grade_id", "path"), _catalog(MUTANTS))
def test_mutant_fails_with_a_message_naming_its_mistake(notebook: Path, grade_id: str, path: Path) -> None:
    source = path.read_text()
    mistake, expect = parse_header(source)
    assert mistake and expect, f"{path.name} needs '# MISTAKE:' and '# EXPECT:' lines"
    assert "kvlib" not in source, "a mutant models a learner's own mistake, not a use of kvlib"
    if re.search(r"^# NEEDS: interpreter", source, re.M) and _kernels_compiled():
        pytest.skip("caught only by load traces, which need Triton's CPU interpreter")
    message = _fails_with(notebook, grade_id, source)
    assert expect.lower() in message.lower(), message


def _kernels_compiled() -> bool:
    from kvlib.kernels import MODE

    return MODE == "cuda"


def _delegation_forms(name: str, reference: str, is_class: bool) -> dict[str, str]:
    module, _, attr = reference.rpartition(".")
    setup = f"from {module} import {attr} as _setup_import\n"
    forms = {
        "alias": f"from {module} import {attr} as {name}\n",
        "wrapper": setup
        + (
            f"class {name}:\n"
            "    def __init__(self, *args, **kwargs):\n"
            "        self._impl = _setup_import(*args, **kwargs)\n"
            "    def __getattr__(self, attr):\n"
            "        return getattr(self._impl, attr)\n"
            if is_class
            else f"def {name}(*args, **kwargs):\n    return _setup_import(*args, **kwargs)\n"
        ),
        "module_attribute": f"import {module} as _lib\n"
        + (
            f"class {name}(_lib.{attr}):\n    pass\n"
            if is_class
            else f"def {name}(*args, **kwargs):\n"
            f"    helper = getattr(_lib, {attr!r})\n"
            "    return helper(*args, **kwargs)\n"
        ),
    }
    if is_class:
        forms["subclass_overriding_init"] = (
            setup + f"class {name}(_setup_import):\n    def __init__(self, *args, **kwargs):\n"
            "        super().__init__(*args, **kwargs)\n"
        )
    return forms


def _delegation_params() -> list:
    params = []
    for nb in NOTEBOOKS:
        for gid, solution in solution_sources(nb).items():
            chapter, hidden, name = _graded(nb, gid)
            check = getattr(importlib.import_module(f"autograder.checks.{chapter}"), hidden)
            references = getattr(check, "references", ())
            if not references:  # reported by the test below, not as a collection error
                params.append(pytest.param(nb, gid, None, id=f"{nb.stem}/{gid}/not-decorated"))
                continue
            forms = _delegation_forms(name, references[0], _defines_class(solution, name))
            if re.search(rf"^def {name}\(\s*\)", solution, re.M):
                # A question answered by value takes no arguments, so a generic wrapper cannot call the
                # reference correctly; tests/test_chNN_checks.py hands in realistic kvlib answers.
                forms = {"alias": forms["alias"]}
            for form, source in forms.items():
                params.append(
                    pytest.param(
                        nb, gid, source, id=f"{nb.stem}/{gid}/{form}", marks=getattr(pytest.mark, chapter)
                    )
                )
    return params


@pytest.mark.parametrize(("notebook", "grade_id", "source"), _delegation_params())
def test_handing_in_kvlibs_own_code_scores_zero(notebook: Path, grade_id: str, source: str | None) -> None:
    assert source is not None, "the hidden check must be decorated with @graded(...) naming kvlib's reference"
    message = _fails_with(notebook, grade_id, source)
    assert "delegates to kvlib" in message, message


@pytest.mark.parametrize(("notebook", "grade_id"), _exercises())
def test_mentioning_kvlib_in_a_comment_is_fine(notebook: Path, grade_id: str) -> None:
    source = "# I read kvlib's version after writing mine\n" + solution_sources(notebook)[grade_id]
    run_exercise(notebook, grade_id, source)


@pytest.mark.parametrize(("notebook", "grade_id"), _exercises())
def test_every_exercise_has_an_alternative_correct_solution(notebook: Path, grade_id: str) -> None:
    assert list((CORRECT / notebook.stem / grade_id).glob("*.py")), "add one to autograder/correct/"


@pytest.mark.parametrize(("notebook", "grade_id", "path"), _catalog(CORRECT))
def test_alternative_correct_solution_scores_full_marks(
    notebook: Path, grade_id: str, path: Path, capsys
) -> None:
    """A correct answer written unlike the instructor's must pass: a grader that fails it is wrong."""
    source = path.read_text()
    assert source.startswith("# VALID:"), f"{path.name}: first line '# VALID: <how it differs>'"
    run_exercise(notebook, grade_id, source)
    assert "hidden tests passed" in capsys.readouterr().out
