"""kvlib.course: the notebooks run the learner's code, or kvlib's with a note while it is a stub."""

from __future__ import annotations

import pytest

from kvlib.course import yours_or_reference


def _stub(*args):
    raise NotImplementedError()


def test_finished_code_is_used(capsys):
    assert yours_or_reference("f", abs, _stub, lambda f: f(-1)) is abs
    assert "using your f" in capsys.readouterr().out


def test_a_stub_is_replaced_by_the_reference_with_a_note(capsys):
    assert yours_or_reference("f", _stub, abs, lambda f: f(-1)) is abs
    assert "not implemented yet" in capsys.readouterr().out


def test_a_bug_in_finished_code_is_not_hidden():
    def broken(x):
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        yours_or_reference("f", broken, abs, lambda f: f(-1))
