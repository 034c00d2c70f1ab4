"""Chapter 04's packing and find-the-bugs exercises, beyond what tests/test_checks.py runs for every
exercise: odd answers fail with a message instead of crashing the check, and realistic hand-ins of
kvlib's code through kvlib.quant's building blocks (pack_codes, unpack_codes, quantize) score 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_edits import failure_message

pytestmark = [pytest.mark.ch04, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "04_quantization.ipynb"


def _fails_with(grade_id: str, source: str) -> str:
    return failure_message(NOTEBOOK, grade_id, source)


@pytest.mark.parametrize(
    "value",
    ["None", "3", "{'A': True, 'C': True, 'E': True}", "{'AC', 'E'}", "{'A', 'C', 'E', 'H'}", "set()",
     "{('A',), 'C'}", "{'A', 'C', None}", "['a', 'c', 'e']"],
)  # fmt: skip
def test_odd_bugs_found_answers_fail_with_a_message(value: str) -> None:
    _fails_with("bugs_found", f"def bugs_found():\n    return {value}\n")


@pytest.mark.parametrize(
    "value",
    ["None", "k", "(k, v)", "(k, v, k)", "{'k_codes': k}", "(k.to(torch.int8), k, v.to(torch.int8), v)"],
)
def test_odd_quantize_kv_answers_fail_with_a_message(value: str) -> None:
    _fails_with("quantize_kv", f"def quantize_kv(k, v, bits=8):\n    return {value}\n")


HAND_INS = {
    "pack_int4": "from kvlib.quant import pack_codes\n\n\ndef pack_int4(codes):\n"
    "    if codes.shape[-1] % 2:\n"
    "        raise ValueError('odd')\n"
    "    return pack_codes(codes, 4)\n",
    "unpack_int4": "from kvlib.quant import unpack_codes\n\n\ndef unpack_int4(packed):\n"
    "    return unpack_codes(packed, 4, 2 * packed.shape[-1])\n",
    "quantize_kv": "from kvlib.quant import quantize, unpack_codes\n\n\ndef quantize_kv(k, v, bits=8):\n"
    "    if bits not in (4, 8):\n"
    "        raise ValueError('bits')\n"
    "    out = []\n"
    "    for x in (k, v):\n"
    "        q = quantize(x.float(), bits, 'symmetric', 'per_token')\n"
    "        codes = unpack_codes(q.codes, bits, x.shape[-1]).to(torch.int16) - 2 ** (bits - 1)\n"
    "        out += [codes.to(torch.int8), q.scales]\n"
    "    return tuple(out)\n",
    "bugs_found": "def bugs_found():\n"
    "    from kvlib.quant import quantize_kv\n"
    "    k = torch.zeros(1, 1, 1, 4)\n"
    "    quantize_kv(k, k, 4)  # does the fixed version give 4 values? then C is a bug\n"
    "    return {'A', 'C', 'E'}\n",
}


@pytest.mark.parametrize("grade_id", sorted(HAND_INS))
def test_realistic_use_of_kvlib_quant_scores_zero(grade_id: str) -> None:
    assert "delegates to kvlib" in _fails_with(grade_id, HAND_INS[grade_id])


def test_a_pair_that_swaps_nibbles_both_ways_round_trips_but_fails_both() -> None:
    pack = (
        "def pack_int4(codes):\n"
        "    if codes.shape[-1] % 2 or (codes > 15).any():\n"
        "        raise ValueError('bad codes')\n"
        "    return (codes[..., 0::2] << 4) | codes[..., 1::2]\n"
    )
    unpack = (
        "def unpack_int4(packed):\n"
        "    return torch.stack([packed >> 4, packed & 15], -1).reshape(*packed.shape[:-1], -1)\n"
    )
    namespace: dict = {}
    exec("import torch\n" + pack + unpack, namespace)  # noqa: S102 - the pair under test
    import torch

    codes = torch.randint(0, 16, (3, 8), dtype=torch.uint8)
    assert torch.equal(namespace["unpack_int4"](namespace["pack_int4"](codes)), codes)
    assert "nibbles are swapped" in _fails_with("pack_int4", pack)
    assert "nibbles are swapped" in _fails_with("unpack_int4", unpack)
