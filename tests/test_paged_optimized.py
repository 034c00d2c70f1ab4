"""The paged tests once more under ``python -O``, which strips every ``assert`` (issue 11).

A library guard written as ``assert`` vanishes there: before the fix, a double free under -O left a
reference count of -1 and a block twice on the free list, and ``test_allocator_rejects_misuse``
failed. This run proves the guards are real exceptions and that ``check_invariants`` (which the
hypothesis state machines call after every step) still checks.

Two things keep the run honest: ``KVLIB_EXPECT_OPTIMIZED=1`` enables a canary in
tests/test_bad_input_paged.py that fails unless ``__debug__`` is False, and pytest keeps rewriting
the asserts of test modules under -O, so the tests' own checks still fire there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = [pytest.mark.ch06, pytest.mark.slow]

PAGED_TESTS = [
    "tests/test_paged_manager.py",
    "tests/test_paged_prefix.py",
    "tests/test_paged_stateful.py",
    "tests/test_paged_eviction.py",
    "tests/test_paged_simulate.py",
    "tests/test_bad_input_paged.py",
]


def test_paged_tests_pass_under_python_O() -> None:
    env = {**os.environ, "KVLIB_EXPECT_OPTIMIZED": "1"}
    cmd = [sys.executable, "-O", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *PAGED_TESTS]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=800)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"paged tests fail under python -O:\n{tail}"
    # nothing skipped, the canary included: the subprocess really had __debug__ False
    summary = re.findall(r"^\d+ passed.*$", proc.stdout, re.MULTILINE)
    assert summary and "skipped" not in summary[-1], f"expected every test to run:\n{tail}"
