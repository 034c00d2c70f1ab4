"""Chapter 04's KIVI cache checks, beyond what tests/test_checks.py runs for every exercise.

The diagnoses are only as good as the check's simulator of wrong windows: its correct rule must equal
kvlib's QuantizedKVCache on every configuration the hidden tests use, and each wrong rule must differ
from it there (a wrong rule that equals the right one would name a mistake the learner did not make).
Calling kvlib.quant.quantize is allowed in this exercise (the window is the exercise), imported any way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from autograder.checks.ch04 import kivi
from autograder.harness import run_exercise

pytestmark = [pytest.mark.ch04, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "04_quantization.ipynb"
CORRECT = REPO / "autograder" / "correct" / "04_quantization" / "kivi_cache"
CONFIGS = [(kivi._VISIBLE, [9, 1, 1, 1, 2, 3])] + [(cfg, steps) for cfg, steps, _ in kivi._HIDDEN]


def _inputs(cfg: kivi._Config, steps: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    shape = lambda n: (cfg.B, cfg.KV, n, cfg.D)  # noqa: E731
    return [(torch.randn(*shape(n), generator=gen).to(cfg.dtype),) * 2 for n in steps]


@pytest.mark.parametrize(("cfg", "steps"), CONFIGS, ids=lambda x: str(getattr(x, "dtype", x)))
def test_simulated_rule_equals_quantized_kv_cache(cfg: kivi._Config, steps: list[int]) -> None:
    inputs = _inputs(cfg, steps)
    ref = kivi._reference(cfg)
    for i, (k, v) in enumerate(inputs):
        want = ref.update(0, k, v)
        got = kivi._simulate(inputs[: i + 1], cfg, kivi._Rule())
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_every_wrong_rule_differs_somewhere_in_the_hidden_configs() -> None:
    """Each diagnosis can fire: after some update of some configuration its rule gives another answer."""
    differs: dict[str, bool] = {}
    for cfg, steps in CONFIGS:
        inputs = _inputs(cfg, steps)
        for i in range(1, len(inputs) + 1):
            right = kivi._simulate(inputs[:i], cfg, kivi._Rule())
            for message, rule in kivi._wrong_rules(cfg):
                key = message.split(":")[0][:60]
                try:
                    wrong = kivi._simulate(inputs[:i], cfg, rule)
                except ValueError:  # e.g. values in groups of G when G does not divide D
                    continue
                same = wrong[0].shape == right[0].shape and torch.equal(wrong[0], right[0])
                differs[key] = differs.get(key, False) or not (same and torch.equal(wrong[1], right[1]))
    assert differs and all(differs.values()), [k for k, d in differs.items() if not d]


def test_quantize_imported_from_kvlib_in_the_cell_is_allowed(capsys) -> None:
    source = (CORRECT / "chunk_list_window.py").read_text()
    source = "import kvlib.quant\n" + re.sub(r"\bquantize\(", "kvlib.quant.quantize(", source)
    run_exercise(NOTEBOOK, "kivi_cache", source)
    assert "hidden tests passed" in capsys.readouterr().out
