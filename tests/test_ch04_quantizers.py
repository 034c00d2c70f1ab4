"""Chapter 04's shared quantizer checks (autograder/checks/ch04/_bound.py), beyond what tests/test_checks.py
runs per exercise: the error bound names the worst element, a code off by one is forgiven only at a tie, and
`check_symmetric` holds at 4 bits too (the fixed quantize_kv reuses it with qmax = 7).
"""

from __future__ import annotations

import pytest
import torch

from autograder.checks.ch04._bound import assert_within_half_step, check_symmetric, code_mismatch
from autograder.checks.common import CheckFailed
from kvlib.quant import quantize_kv

pytestmark = [pytest.mark.ch04, pytest.mark.autograder]


def test_the_bound_names_the_worst_element() -> None:
    x = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    x_hat = x.clone()
    x_hat[0, 1] += 0.3  # 0.6 half-steps: fine
    x_hat[1, 2] -= 0.9  # 1.8 half-steps: the worst
    x_hat[1, 0] += 0.6  # 1.2 half-steps: also wrong, but not the worst
    with pytest.raises(CheckFailed, match=r"at index \(1, 2\) x = 5.*1.8 x scale / 2"):
        assert_within_half_step(x, x_hat, torch.tensor(1.0), "q")
    assert_within_half_step(x, x + 0.5, torch.tensor(1.0), "q")  # exactly half a step is allowed


def test_a_code_off_by_one_is_forgiven_only_at_a_tie() -> None:
    quotient = torch.tensor([2.5, 2.5 + 1e-6, 2.3, -3.5], dtype=torch.float64)
    expected = torch.tensor([2, 3, 2, -4])
    learner = torch.tensor([3, 2, 3, -3])  # the other rounding at the ties, a wrong code at 2.3
    assert code_mismatch(learner, expected, quotient).tolist() == [False, False, True, False]
    assert code_mismatch(expected + 2, expected, quotient).all()  # two steps off is never a tie


def test_check_symmetric_at_4_bits_accepts_the_reference_and_names_truncation() -> None:
    x = torch.randn(2, 3, 5, 16, generator=torch.Generator().manual_seed(0))
    k_codes, k_scale, _, _ = quantize_kv(x, x, bits=4)
    check_symmetric(k_codes, k_scale, x, 7, (k_codes, k_scale), "quantize_kv's keys")
    truncated = (x / k_scale).trunc().to(torch.int8)
    with pytest.raises(CheckFailed, match="truncated toward zero"):
        check_symmetric(truncated, k_scale, x, 7, (k_codes, k_scale), "quantize_kv's keys")
    with pytest.raises(CheckFailed, match="not / 8"):
        check_symmetric(k_codes, k_scale * 7 / 8, x, 7, (k_codes, k_scale), "quantize_kv's keys")
