"""Chapter 07: launching kvlib's own Triton kernel from a launcher you wrote is handing in kvlib's code.

The generic delegation tests (tests/test_checks.py) hand in kvlib's launchers; here the learner writes
the launcher and launches kvlib's private kernel with it. Triton's interpreter runs a rewritten copy of
a kernel's function, so the profile hook of `@graded` cannot see it: the launch itself is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.harness import run_exercise

pytestmark = [pytest.mark.ch07, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "07_triton.ipynb"

LAUNCHES_KVLIB_SOFTMAX = """
from kvlib.kernels.softmax import _softmax_rows_kernel as my_kernel


def softmax_rows(x):
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    block = triton.next_power_of_2(x.shape[1])
    my_kernel[(x.shape[0],)](x, out, x.shape[1], x.stride(0), out.stride(0), BLOCK=block)
    return out
"""

LAUNCHES_KVLIB_MERGE = """
import kvlib.kernels.paged_attention as lib


def merge_splits(partials, lse):
    batch, num_heads, num_splits, head_dim = partials.shape
    out = torch.empty((batch, num_heads, head_dim), dtype=torch.float32, device=partials.device)
    lib._combine_splits_kernel[(batch, num_heads)](
        partials, lse, out, num_splits,
        partials.stride(0), partials.stride(1), partials.stride(2), lse.stride(0), lse.stride(1),
        out.stride(0), out.stride(1),
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        BLOCK_S=max(2, triton.next_power_of_2(num_splits)),
    )
    return out
"""


@pytest.mark.parametrize(
    ("grade_id", "source", "kernel"),
    [
        ("softmax_rows", LAUNCHES_KVLIB_SOFTMAX, "_softmax_rows_kernel"),
        ("merge_splits", LAUNCHES_KVLIB_MERGE, "_combine_splits_kernel"),
    ],
)
def test_launching_kvlibs_kernel_from_your_own_launcher_scores_zero(grade_id, source, kernel):
    from kvlib.kernels import MODE

    if MODE == "cuda":
        pytest.skip("compiled kernels run no Python: the launch check works in the interpreter")
    with pytest.raises(AssertionError, match="delegates to kvlib") as failure:  # fresh() reloads CheckFailed
        run_exercise(NOTEBOOK, grade_id, source)
    assert "launches kvlib's" in str(failure.value) and kernel in str(failure.value)


def test_launch_patch_and_profile_hook_are_undone_after_a_failing_check():
    import sys

    from triton.runtime import interpreter

    before = interpreter.InterpretedFunction.run
    with pytest.raises(AssertionError):
        run_exercise(NOTEBOOK, "softmax_rows", LAUNCHES_KVLIB_SOFTMAX)
    assert interpreter.InterpretedFunction.run is before
    assert sys.getprofile() is None
