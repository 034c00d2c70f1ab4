"""Chapter 03, beyond what tests/test_checks.py runs for every exercise: other correct ways to write
each exercise pass (a spec read literally never fails a right answer), and the optional MLA bonus can
be skipped without breaking the notebook or the self-check.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from autograder import notebook as nbk
from autograder.grading import check_notebook
from autograder.harness import run_exercise

pytestmark = [pytest.mark.ch03, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "03_gqa.ipynb"

# Correct answers written differently from the instructor's: each must score full marks.
OTHER_CORRECT = {
    "repeat_kv": [
        "def repeat_kv(x, n_rep):\n    return torch.repeat_interleave(x, n_rep, dim=1)\n",
        "def repeat_kv(x, n_rep):\n"
        "    if n_rep == 1:\n        return x.clone()\n"
        "    return torch.stack([x] * n_rep, dim=2).flatten(1, 2)\n",
    ],
    "grouped_attention_step": [
        # repeat the shared heads, compute in float32, fill with the dtype's own minimum
        "def grouped_attention_step(q, k_new, v_new, past=None):\n"
        "    k_all = k_new if past is None else torch.cat([past[0], k_new], dim=2)\n"
        "    v_all = v_new if past is None else torch.cat([past[1], v_new], dim=2)\n"
        "    g = q.shape[1] // k_all.shape[1]\n"
        "    k, v = repeat_kv(k_all, g).float(), repeat_kv(v_all, g).float()\n"
        "    t, total = q.shape[2], k.shape[2]\n"
        "    scores = q.float() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])\n"
        "    future = torch.ones(t, total, dtype=torch.bool).triu(total - t + 1)\n"
        "    scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)\n"
        "    return (torch.softmax(scores, dim=-1) @ v).to(q.dtype), (k_all, v_all)\n",
        # the fused kernel with an explicit mask (is_causal would align the mask top-left)
        "import torch.nn.functional as F\n"
        "def grouped_attention_step(q, k_new, v_new, past=None):\n"
        "    k_all = k_new if past is None else torch.cat([past[0], k_new], dim=-2)\n"
        "    v_all = v_new if past is None else torch.cat([past[1], v_new], dim=-2)\n"
        "    g = q.shape[1] // k_all.shape[1]\n"
        "    t, total = q.shape[2], k_all.shape[2]\n"
        "    allowed = torch.ones(t, total, dtype=torch.bool).tril(total - t)\n"
        "    k, v = k_all.repeat_interleave(g, 1), v_all.repeat_interleave(g, 1)\n"
        "    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), (k_all, v_all)\n",
    ],
    "convert_to_gqa": [
        "import copy\n"
        "def convert_to_gqa(model, n_kv_heads):\n"
        "    cfg = copy.deepcopy(model.config)\n"
        "    cfg.n_kv_heads = n_kv_heads\n"
        "    new = TinyDecoder(cfg).eval()\n"
        "    g, d = cfg.n_heads // n_kv_heads, cfg.head_dim\n"
        "    with torch.no_grad():\n"
        "        for name, p in new.named_parameters():\n"
        "            old = model.get_parameter(name)\n"
        "            if old.shape != p.shape:  # k_proj / v_proj\n"
        "                old = old.view(n_kv_heads, g, d, -1).mean(1).reshape(p.shape)\n"
        "            p.copy_(old)\n"
        "    return new\n",
    ],
    "kv_bytes_per_token": [
        "import numpy as np\n"
        "def kv_bytes_per_token(shape, bytes_per_element=2):\n"
        "    return np.prod([2, shape.num_layers, shape.num_kv_heads, shape.head_dim, bytes_per_element])\n",
    ],
    "gqa_saving_factor": [
        "import numpy as np\n"
        "def gqa_saving_factor(shape):\n    return np.float64(shape.num_heads) / shape.num_kv_heads\n",
        "def gqa_saving_factor(shape):\n"
        "    return kv_bytes_per_token(dataclasses.replace(shape, num_kv_heads=shape.num_heads)) / "
        "kv_bytes_per_token(shape)\n",
    ],
    "expand_latent": [
        "def expand_latent(c_kv, w_uk, w_uv, n_heads):\n"
        "    d = w_uk.shape[0] // n_heads\n"
        "    split = lambda w: torch.einsum('btc,hdc->bhtd', c_kv, w.view(n_heads, d, -1))\n"
        "    return split(w_uk), split(w_uv)\n",
    ],
}


@pytest.mark.parametrize(
    ("grade_id", "source"),
    [pytest.param(g, s, id=f"{g}-{i}") for g, many in OTHER_CORRECT.items() for i, s in enumerate(many)],
)
def test_other_correct_solutions_pass(grade_id: str, source: str, capsys) -> None:
    run_exercise(NOTEBOOK, grade_id, source)
    assert "hidden tests passed" in capsys.readouterr().out


def test_skipping_the_mla_bonus_costs_its_points_only(tmp_path: Path) -> None:
    """Run All and the self-check work with the bonus left as released: the later cell uses the reference."""
    learner = nbk.with_fixed_cell_ids(copy.deepcopy(nbformat.read(NOTEBOOK, as_version=4)))
    (bonus,) = [c for c in learner.cells if nbk.grade_id(c) == "expand_latent"]
    bonus.source = "def expand_latent(c_kv, w_uk, w_uv, n_heads):\n    raise NotImplementedError()\n"
    path = tmp_path / NOTEBOOK.name
    nbformat.write(learner, path)

    report = check_notebook(path, NOTEBOOK)

    assert report.setup_errors == []
    scores = {e.grade_id: e for e in report.exercises}
    assert scores["expand_latent"].score == 0
    assert "not implemented yet" in scores["expand_latent"].message
    assert report.score == report.max_score - scores["expand_latent"].max_score == 11
