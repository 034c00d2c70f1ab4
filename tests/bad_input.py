"""The table format of the bad-input tests (tests/test_bad_input_*.py).

Each row is a :class:`Case`: a call a user could make by mistake, the exception it must raise and
the words its message must contain (the offending argument and what was expected). Messages must
be one line: a course user reads the last line of a traceback and nothing else.

The checks call ``pytest.fail`` rather than ``assert``: this file is not a test module, so pytest does
not rewrite its asserts, and ``python -O`` (tests/test_paged_optimized.py) would strip them.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest


@dataclass
class Case:
    id: str
    call: Callable[[], object]
    raises: type[BaseException] | tuple[type[BaseException], ...]
    mentions: tuple[str, ...] = field(default_factory=tuple)  # substrings, matched case-insensitively


def params(cases: list[Case]) -> list:
    return [pytest.param(case, id=case.id) for case in cases]


def assert_mentions(text: str, mentions: tuple[str, ...]) -> None:
    missing = [word for word in mentions if word.lower() not in text.lower()]
    if missing:
        pytest.fail(f"message {text!r} does not mention {missing}")


def assert_clear_error(case: Case) -> BaseException:
    """The call raises ``case.raises`` with a one-line message naming everything in ``case.mentions``."""
    with pytest.raises(case.raises) as info:
        case.call()
    message = str(info.value).strip()
    if not message:
        pytest.fail(f"{type(info.value).__name__} with an empty message")
    if "\n" in message:
        pytest.fail(f"message is not one line: {message!r}")
    assert_mentions(message, case.mentions)
    return info.value


@dataclass
class CliCase:
    id: str
    argv: list[str]
    mentions: tuple[str, ...] = field(default_factory=tuple)
    exit_code: int = 2


def run_cli(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str, str]:
    """Run an argparse ``main(argv)`` in-process: (exit status, stdout, stderr). argparse's
    SystemExit becomes the status, and a traceback escaping ``main`` fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return int(code or 0), out.getvalue(), err.getvalue()


def assert_cli_error(main: Callable[[list[str]], int], case: CliCase) -> str:
    """``main(case.argv)`` exits with ``case.exit_code``, says why on stderr, and has no traceback."""
    code, out, err = run_cli(main, case.argv)
    if code != case.exit_code:
        pytest.fail(f"exit {code}, expected {case.exit_code}; stdout={out!r} stderr={err!r}")
    if "Traceback" in err + out:
        pytest.fail(f"a traceback instead of a one-line error:\n{err}")
    if not err.strip():
        pytest.fail("no error message on stderr")
    assert_mentions(err, case.mentions)
    return err
