"""The training script: a smoke test on a tiny config, reproducibility, the checkpoint it writes, --help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from kvlib import data, train
from kvlib.model import TinyDecoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.model

TINY = ["--dim", "32", "--num-layers", "2", "--num-heads", "4", "--num-kv-heads", "2", "--ffn-dim", "64"]
TINY += ["--seq-len", "32", "--max-seq-len", "64", "--batch-size", "4", "--warmup", "2", "--threads", "1"]
TINY += ["--eval-windows", "4", "--no-progress"]


def _args(*extra: str):
    return train.build_parser().parse_args([*TINY, *extra])


def test_smoke_training_reduces_loss_and_is_reproducible(capsys):
    args = _args("--steps", "12", "--eval-every", "6", "--lr", "1e-2")
    model = train.train(args)
    out = capsys.readouterr().out
    assert "steps/s" in out and "val loss" in out and args.steps_done == 12
    losses = [float(line.split("val loss ")[1].split()[0]) for line in out.splitlines() if "val loss" in line]
    assert len(losses) == 2 and losses[1] < losses[0] < 7.0  # uniform over 1024 tokens is ln(1024) = 6.93
    again = train.train(_args("--steps", "12", "--eval-every", "6", "--lr", "1e-2"))
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two runs with the same seed"


def test_schedule_warmup_cosine_and_time_budget():
    args = _args("--steps", "100", "--warmup", "10", "--lr", "1e-3", "--min-lr", "1e-4", "--max-minutes", "1")
    assert train.lr_at(0, 0.0, args) == pytest.approx(1e-4)
    assert train.lr_at(50, 0.5, args) == pytest.approx(5.5e-4)
    assert train.lr_at(99, 1.0, args) == pytest.approx(1e-4)
    assert train.schedule_progress(50, 0.0, args) == 0.5  # step count dominates on an idle machine
    assert train.schedule_progress(10, 45.0, args) == 0.75  # the clock dominates on a busy one
    assert train.schedule_progress(10, 600.0, args) == 1.0


def test_writes_a_loadable_checkpoint_with_card(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    train.main([*TINY, "--steps", "3", "--eval-every", "3", "--name", "tiny", "--out-dir", str(tmp_path)])
    folder = tmp_path / "tiny"
    files = {p.name for p in folder.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "MODEL_CARD.md",
    } <= files
    ours = TinyDecoder.from_pretrained(folder)
    assert ours.config.num_kv_heads == 2 and ours.config.max_seq_len == 64
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([data.encode("ROMEO:\nBut soft")])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)
    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    assert tok("ROMEO:")["input_ids"] == data.encode("ROMEO:")
    card = (folder / "MODEL_CARD.md").read_text()
    for needle in (
        "Parameters:",
        "validation perplexity:",
        "Command: `python -m kvlib.train",
        "Wall time",
        "ROMEO:",
    ):
        assert needle in card, needle
    assert f"{ours.num_parameters():,}" in card


def test_help_documents_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "kvlib.train", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    parser = train.build_parser()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in out, flag
        assert action.help, f"{action.option_strings} has no help text"
