"""Chapter 04's shared quantizer checks (autograder/checks/ch04/_bound.py), beyond what tests/test_checks.py
runs per exercise: the error bound names the worst element, a code off by one is forgiven only at a tie, and
`check_symmetric` holds at 4 bits too (the fixed quantize_kv reuses it with qmax = 7), and
`properties.assert_no_nan_cast` (used around the zero-token and zero-group cases of all three quantizers)
fails a zero guard applied after the division whichever way the NaN is cast, never a correct answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autograder.checks.ch04._bound import assert_within_half_step, check_symmetric, code_mismatch
from autograder.checks.common import CheckFailed
from autograder.checks.properties import assert_no_nan_cast
from kvlib.quant import quantize_groups, quantize_int8, quantize_kv

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


def _zero_token() -> torch.Tensor:
    x = torch.randn(2, 3, 4, 8, generator=torch.Generator().manual_seed(1))
    x[0, 1, 2] = 0.0
    return x


def _quotient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x / scale with the guard missing (NaN for the token of zeros), and the guarded scale."""
    scale = x.float().abs().amax(dim=-1, keepdim=True) / 127
    return torch.round(x.float() / scale), torch.where(scale > 0, scale, torch.ones_like(scale))


def _copy_into(q: torch.Tensor) -> torch.Tensor:
    out = torch.empty(q.shape, dtype=torch.int8)
    return out.copy_(q)


def _assign_into(q: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(q.shape, dtype=torch.int8)
    out[...] = q
    return out


LATE_CASTS = {
    "to": lambda q: q.to(torch.int8),
    "to_keyword": lambda q: torch.Tensor.to(q, dtype=torch.int8),
    "type": lambda q: q.type(torch.int8),
    "char": lambda q: q.char(),
    "byte_after_clamp": lambda q: (q + 7).clamp(0, 15).byte(),
    "int": lambda q: q.int(),
    "long": lambda q: q.long(),
    "short": lambda q: q.short(),
    "copy_": _copy_into,
    "setitem": _assign_into,
}


@pytest.mark.parametrize("cast", LATE_CASTS.values(), ids=LATE_CASTS)
def test_a_zero_guard_after_the_division_fails_whichever_way_the_nan_is_cast(cast) -> None:
    x = _zero_token()

    def late_guard() -> tuple[torch.Tensor, torch.Tensor]:
        quotient, scale = _quotient(x)
        return cast(quotient), scale  # on x86 the NaN codes come out 0: the result looks right

    with pytest.raises(CheckFailed, match=r"a NaN \(0 / 0 for a group of zeros\) was cast to an integer"):
        assert_no_nan_cast(late_guard, "q", "group")


def test_correct_answers_that_meet_a_nan_pass() -> None:
    x = _zero_token()

    def masked() -> torch.Tensor:  # the NaN is computed but never cast
        scale = x.abs().amax(dim=-1, keepdim=True) / 127
        return torch.where(scale > 0, x / scale, 0).round().to(torch.int8)

    def overwritten() -> torch.Tensor:  # cast, then every code from a NaN replaced: nothing depends on it
        quotient, _ = _quotient(x)
        return torch.where((x == 0).all(dim=-1, keepdim=True), 0, quotient.to(torch.int8)).to(torch.int8)

    def float_nan_kept() -> torch.Tensor:  # NaN in a float result is not a cast (other checks judge it)
        return _quotient(x)[0]

    for run in (masked, overwritten, float_nan_kept):
        assert_no_nan_cast(run, run.__name__)
    for run in (lambda: quantize_int8(x), lambda: quantize_groups(x, 4), lambda: quantize_kv(x, x, 4)):
        assert_no_nan_cast(run, "kvlib's reference")  # the checks' own references cast no NaN


def test_numpy_routes_are_not_watched() -> None:
    """NumPy's casts are outside torch's function modes: a correct NumPy answer can never fail here."""
    x = _zero_token().numpy()
    scale = np.abs(x).max(axis=-1, keepdims=True) / 127
    safe = np.where(scale > 0, scale, 1.0)
    assert_no_nan_cast(lambda: torch.from_numpy(np.round(x / safe).astype(np.int8)), "numpy")


def test_the_watch_is_removed_when_the_code_raises_or_the_check_fails() -> None:
    x = _zero_token()

    def raises() -> None:
        raise RuntimeError("learner's bug")

    def raises_on_the_second_run():  # the NaN cast as 1 makes it fail: the result depends on the NaN
        codes = _quotient(x)[0].to(torch.int8)
        if bool((codes[0, 1, 2] == 1).any()):  # the token of zeros: 0 on x86, 1 on the second run
            raise IndexError("index 1 is out of bounds")
        return codes

    with pytest.raises(RuntimeError, match="learner's bug"):
        assert_no_nan_cast(raises, "q")
    assert torch._C._len_torch_function_stack() == 0
    with pytest.raises(CheckFailed, match="was cast to an integer dtype"):
        assert_no_nan_cast(raises_on_the_second_run, "q")
    assert torch._C._len_torch_function_stack() == 0
    assert _quotient(x)[0].to(torch.int8)[0, 1, 2].tolist() == [0] * 8  # NaN casts work again, unwatched
