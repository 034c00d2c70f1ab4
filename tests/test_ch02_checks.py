"""Chapter 02, beyond what tests/test_checks.py runs for every exercise: other correct ways to write
each exercise pass (NumPy numbers, other layouts, other error types), odd answers fail with a message
instead of crashing the check, realistic hand-ins of kvlib's code for the argument-less exercises
score 0, and no exercise needs a value that only a display-only cell computes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from exercise_edits import failure_message

from autograder import notebook as nbk
from autograder.harness import solution_sources

pytestmark = [pytest.mark.ch02, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "02_memory.ipynb"

HEADER = {
    "ex1_kv_bytes": "def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch, dtype):\n",
    "ex2_cache_bytes": "def cache_bytes(cache):\n",
    "ex4_interview": "def interview_answers():\n",
    "ex5_find_error": "def find_the_errors():\n",
}

# Odd return values: each must fail with a CheckFailed message (never crash the check).
ODD_VALUES = [
    "None",
    "'2 GiB'",
    "numpy.float64(1.5)",
    "numpy.array([1.0, 2.0])",
    "torch.tensor(3.0, dtype=torch.float64)",
    "torch.ones(2, dtype=torch.float64)",
    "float('nan')",
    "[1, 2]",
]


def _fails_with(grade_id: str, source: str) -> str:
    return failure_message(NOTEBOOK, grade_id, source)


@pytest.mark.parametrize("value", ODD_VALUES)
@pytest.mark.parametrize("grade_id", ["ex1_kv_bytes", "ex2_cache_bytes"])
def test_odd_numeric_answers_fail_with_a_message(grade_id: str, value: str) -> None:
    _fails_with(grade_id, f"import numpy\n{HEADER[grade_id]}    return {value}\n")


@pytest.mark.parametrize("value", ODD_VALUES)
def test_odd_dict_answers_fail_with_a_message(value: str) -> None:
    for grade_id, names in (
        ("ex4_interview", ["llama2_7b_4096_fp16"]),
        ("ex5_find_error", ["claim_a_true_gib", "claim_b_memory_exponent"]),
    ):
        name = HEADER[grade_id].split()[1].split("(")[0]
        for key in names:
            source = (
                f"import numpy\n{solution_sources(NOTEBOOK)[grade_id]}\n_right = {name}\n"
                f"def {name}():\n    return {{**_right(), {key!r}: {value}}}\n"
            )
            _fails_with(grade_id, source)


def test_kv_bytes_messages_name_the_real_mistake() -> None:
    no_bytes = _fails_with(
        "ex1_kv_bytes",
        HEADER["ex1_kv_bytes"] + "    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch\n",
    )
    assert "bytes per element are missing" in no_bytes and "factor 2" not in no_bytes, no_bytes
    tensor = _fails_with(
        "ex1_kv_bytes",
        HEADER["ex1_kv_bytes"] + "    return torch.tensor(1.0)\n",
    )
    assert "one-element tensor" in tensor, tensor
    # a right value as a float is told to be an int, not that it is wrong
    as_float = _fails_with(
        "ex1_kv_bytes",
        "import numpy\n" + HEADER["ex1_kv_bytes"]
        + "    b = {'fp32': 4, 'fp16': 2, 'bf16': 2, 'int8': 1}.get(dtype)\n"
        "    b = b or torch.empty((), dtype=dtype).element_size()\n"
        "    return numpy.float64(2 * num_layers * num_kv_heads * head_dim * seq_len * batch * b)\n",
    )  # fmt: skip
    assert "must be an int" in as_float, as_float


# Realistic hand-ins of kvlib's code. The generic forms of tests/test_checks.py call the reference
# with the learner's arguments, which cannot apply to the argument-less ex4/ex5 (kv_cache_bytes()
# with no arguments raises TypeError before any kvlib code runs); these call it with real ones.
DELEGATIONS = {
    "ex1_kv_bytes": "from kvlib.memory import bytes_per_element\n" + HEADER["ex1_kv_bytes"]
    + "    b = bytes_per_element(dtype)\n"
    "    return int(2 * num_layers * num_kv_heads * head_dim * seq_len * batch * b)\n",
    "ex2_cache_bytes": "from kvlib import memory\n" + HEADER["ex2_cache_bytes"]
    + "    storages = [t.untyped_storage() for t in memory.iter_tensors(cache)]\n"
    "    seen = {s.data_ptr(): s.nbytes() for s in storages}\n"
    "    return sum(seen.values())\n",
    "ex4_interview": "from kvlib.memory import MODEL_CONFIGS\n" + HEADER["ex4_interview"]
    + "    l7, l70 = MODEL_CONFIGS['Llama-2-7B'], MODEL_CONFIGS['Llama-2-70B']\n"
    "    g = 2**30\n"
    "    return {'llama2_7b_4096_fp16': l7.kv_bytes(4096) / g,\n"
    "            'llama2_70b_4096_fp16_if_mha': 8 * l70.kv_bytes(4096) / g,\n"
    "            'llama2_70b_4096_fp16': l70.kv_bytes(4096) / g,\n"
    "            'llama2_70b_100x2048_fp16': l70.kv_bytes(2048, 100) / g,\n"
    "            'system_prompt_1000_users_unshared': l7.kv_bytes(1000, 1000) / g,\n"
    "            'system_prompt_1000_users_shared': l7.kv_bytes(1000) / g}\n",
    "ex5_find_error": "from kvlib.memory import kv_cache_bytes as reference_kv_cache_bytes\n"
    + HEADER["ex5_find_error"]
    + "    return {'claim_a_is_correct': False,\n"
    "            'claim_a_true_gib': reference_kv_cache_bytes(32, 32, 128, 4096, 1, 'fp16') / 2**30,\n"
    "            'claim_a_mistake': 'a', 'claim_b_is_correct': False,\n"
    "            'claim_b_memory_exponent': 1, 'claim_b_attention_scores_exponent': 2}\n",
}  # fmt: skip


@pytest.mark.parametrize("grade_id", list(DELEGATIONS))
def test_realistic_use_of_kvlibs_formula_scores_zero(grade_id: str) -> None:
    assert "delegates to kvlib" in _fails_with(grade_id, DELEGATIONS[grade_id])


def _assigned(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def test_no_exercise_invites_a_value_only_a_display_only_cell_computes() -> None:
    """Grading skips display-only cells: a solution reading their results would score 0 (NameError).

    So no markdown cell between an exercise's previous test cell and its solution may name such a
    value in code font, and the solution's namespace never holds one.
    """
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    display_only: set[str] = set()
    prose = ""
    for cell in cells:
        if nbk.is_display_only(cell):
            display_only |= _assigned(cell.source)
        elif cell.cell_type == "markdown":
            prose += cell.source
        elif nbk.is_solution(cell):
            named = {name for name in display_only if f"`{name}`" in prose}
            assert not named, f"{nbk.grade_id(cell)}'s prose names display-only values {named}"
            prose = ""
        elif nbk.is_test(cell):
            prose = ""
