"""``python -m kvlib.bench eviction`` and the measurements behind chapter 05's plots.

``kvlib.data.stream_nll`` against uncached forwards written out here (the shipped model with a dense cache;
a one-layer model, where what a query sees through an evicting cache can be rebuilt by hand), and
``attention_to_first`` against the attention weights of transformers' own Llama implementation.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from bad_input import CliCase, assert_cli_error, params, run_cli

from kvlib.bench import eviction
from kvlib.bench.__main__ import main
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.evict import SinkKVCache, SlidingWindowKVCache
from kvlib.data import stream_nll, token_ids
from kvlib.model import ModelConfig, TinyDecoder, checkpoint_path, load_model

pytestmark = [pytest.mark.ch05, pytest.mark.usefixtures("one_torch_thread")]

POLICIES = ("dense", "window", "sinks", "h2o")
KV_BYTES_PER_TOKEN = 2 * 6 * 2 * 32 * 4  # K and V, 6 layers, 2 KV heads of 32 dims, fp32
H2O_EXTRA_PER_TOKEN = 6 * 2 * (4 + 8)  # a float32 score and an int64 position per layer and KV head


@pytest.fixture(scope="module")
def model():
    return load_model("shakespeare-gqa")


@pytest.fixture(scope="module")
def model16():
    return load_model("shakespeare-gqa", dtype=torch.float16)


def _streams(rows: int, length: int, offset: int = 1000) -> torch.Tensor:
    ids = token_ids("val")
    return torch.stack([ids[offset + 5000 * r : offset + 5000 * r + length] for r in range(rows)])


def _uncached_nll(model, tokens: torch.Tensor) -> torch.Tensor:
    """-log p(tokens[:, i+1] | tokens[:, :i+1]) from one uncached forward: [B, N-1]."""
    logits = model(tokens).float()  # (B, N, V)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


# --- stream_nll -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("chunk", "prefill"), [(1, None), (1, 9), (7, None), (5, 13), (64, None)])
def test_stream_nll_with_a_dense_cache_is_the_uncached_nll(model, chunk, prefill):
    tokens = _streams(3, 41)
    before = tokens.clone()
    cache = NaiveKVCache(6)
    got = stream_nll(model, tokens, cache, chunk=chunk, prefill=prefill)
    with torch.no_grad():
        want = _uncached_nll(model, tokens)
    assert got.shape == (3, 40) and got.dtype == torch.float32 and not got.requires_grad
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    assert torch.equal(tokens, before), "tokens were modified"
    assert cache.seq_len == 41, "every token of the stream is fed, the last one included"


def test_stream_nll_in_fp16_is_float32_and_close_to_the_fp16_forward(model16):
    tokens = _streams(2, 33)
    got = stream_nll(model16, tokens, NaiveKVCache(6), chunk=4)
    with torch.no_grad():
        want = _uncached_nll(model16, tokens)
    assert got.dtype == torch.float32 and got.shape == (2, 32)
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.01)


def test_stream_nll_restores_the_models_mode_and_runs_in_eval(model):
    seen_modes = []

    class Spy(NaiveKVCache):
        def update(self, layer, k, v):
            seen_modes.append(model.training)
            return super().update(layer, k, v)

    tokens = _streams(2, 12)
    model.train()
    try:
        got = stream_nll(model, tokens, Spy(6), chunk=4)
        assert model.training and all(m.training for m in model.modules()), "train mode not restored"
    finally:
        model.eval()
    assert seen_modes and not any(seen_modes), "the stream must run in eval mode"
    torch.testing.assert_close(got, stream_nll(model, tokens, NaiveKVCache(6), chunk=4))


def test_stream_nll_refuses_a_missing_or_used_cache(model):
    tokens = _streams(1, 10)
    with pytest.raises(TypeError, match="cache must be a KV cache.*None"):
        stream_nll(model, tokens, None)
    used = NaiveKVCache(6)
    stream_nll(model, tokens, used)
    with pytest.raises(ValueError, match="must be empty.*seq_len=10"):
        stream_nll(model, tokens, used)
    with pytest.raises(ValueError, match=r"\[B >= 1, N >= 2\]"):
        stream_nll(model, tokens[:, :1], NaiveKVCache(6))
    with pytest.raises(ValueError, match="integer token ids"):
        stream_nll(model, tokens.float(), NaiveKVCache(6))
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        stream_nll(model, tokens, NaiveKVCache(6), chunk=0)


def test_stream_nll_past_the_context(model):
    tokens = _streams(2, 560)
    assert not model.allow_long_context
    with pytest.raises(ValueError, match="allow_long_context"):
        stream_nll(model, tokens, NaiveKVCache(6), chunk=128)
    sinks = stream_nll(model, tokens, SinkKVCache(6, 4, 60), chunk=64)  # re-numbers: needs no flag
    assert sinks.shape == (2, 559) and torch.isfinite(sinks).all()
    model.allow_long_context = True
    try:
        window = stream_nll(model, tokens, SlidingWindowKVCache(6, 64), chunk=64)
    finally:
        model.allow_long_context = False
    assert torch.isfinite(window).all()
    # no eviction before token 64: both read the same keys at the same distances there
    torch.testing.assert_close(sinks[:, :63], window[:, :63], atol=1e-4, rtol=1e-5)
    assert not torch.allclose(sinks[:, 200:], window[:, 200:], atol=1e-3), "sinks kept nothing of its own?"


def _one_layer_model() -> TinyDecoder:
    """A random one-layer GQA decoder (8 heads / 2 KV heads) with sharp attention, context 64.

    With one layer, keys and values depend on their own token only, so what a query sees through an
    evicting cache is exactly an uncached forward of the kept tokens."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=64, dim=64, num_layers=1, num_heads=8, num_kv_heads=2, ffn_dim=96, max_seq_len=64
    )
    model = TinyDecoder(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(25)  # std 0.5: attention far from uniform, so dropping a token shows in the NLL
    return model


def _nll_of_last(model, kept: torch.Tensor, target: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(kept, positions=positions)[:, -1]  # (B, V)
    return F.cross_entropy(logits, target, reduction="none")  # (B,)


@pytest.mark.parametrize("chunk", [1, 4])
def test_stream_nll_through_a_window_sees_what_the_docstring_says(chunk):
    model, W, N = _one_layer_model(), 6, 30
    tokens = torch.randint(0, 64, (3, N), generator=torch.Generator().manual_seed(1))
    got = stream_nll(model, tokens, SlidingWindowKVCache(1, W), chunk=chunk)
    want = torch.empty(3, N - 1)
    for i in range(N - 1):
        start = (i // chunk) * chunk  # the call that feeds token i (prefill = chunk)
        first = max(0, start - W)  # the window kept before that call, then the call's tokens up to i
        want[:, i] = _nll_of_last(
            model, tokens[:, first : i + 1], tokens[:, i + 1], torch.arange(first, i + 1)
        )
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    dense = stream_nll(model, tokens, NaiveKVCache(1), chunk=chunk)
    assert (dense - got).abs()[:, W + chunk :].max() > 1e-2, "the test cannot tell a window from dense"


def test_stream_nll_through_sinks_renumbers_past_the_context():
    model, S, W, N, chunk = _one_layer_model(), 2, 5, 90, 3  # 90 tokens, context 64, flag off
    tokens = torch.randint(0, 64, (2, N), generator=torch.Generator().manual_seed(2))
    got = stream_nll(model, tokens, SinkKVCache(1, S, W), chunk=chunk, prefill=4)
    want = torch.empty(2, N - 1)
    for i in range(N - 1):
        start = 0 if i < 4 else 4 + ((i - 4) // chunk) * chunk
        kept = sorted(set(range(min(start, S))) | set(range(max(S, start - W), start)))
        idx = kept + list(range(start, i + 1))
        want[:, i] = _nll_of_last(model, tokens[:, idx], tokens[:, i + 1], torch.arange(len(idx)))
    # NLLs of a random one-layer model reach ~150 nats; fp32 sums in another order (the cached path, or
    # another CPU's vector width) differ by ~1e-5 of that, while a wrong renumbering moves them by far more
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


# --- attention_to_first ---------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [1, 4])
def test_attention_to_first_matches_transformers_attention_weights(model, first):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(
        checkpoint_path("shakespeare-gqa"), dtype=torch.float32, local_files_only=True,
        attn_implementation="eager",
    ).eval()  # fmt: skip
    tokens = _streams(2, 48)
    with torch.no_grad():
        attentions = hf(tokens, output_attentions=True).attentions  # per layer (B, H, T, T)
    want = torch.stack([a[:, :, first:, :first].sum(-1).mean() for a in attentions])  # queries >= first
    got = eviction.attention_to_first(model, tokens, first)
    assert got.shape == (6,) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # queries before `first` would add mass 1 each: leaving them out is what the docstring says
    with_early = torch.stack([a[:, :, :, :first].sum(-1).mean() for a in attentions])
    assert (with_early - got).abs().max() > 1e-3


def test_attention_to_first_recorder_adds_up_chunked_calls_too(model):
    tokens = _streams(2, 40)
    whole = eviction.attention_to_first(model, tokens, 4)
    recorder = eviction.AttentionToFirst(6, 4)
    with torch.no_grad():
        for s in range(0, 40, 7):
            model(tokens[:, s : s + 7], positions=torch.arange(s, min(s + 7, 40)), cache=recorder)
    torch.testing.assert_close(recorder.mean(), whole, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="T > first=4"):
        eviction.attention_to_first(model, tokens[:, :4], 4)


def test_uniform_share_by_hand():
    assert eviction.uniform_share(1, 3) == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert eviction.uniform_share(2, 5) == pytest.approx((2 / 3 + 2 / 4 + 2 / 5) / 3)


# --- the measurements -----------------------------------------------------------------------------------


def test_eval_streams_are_spread_over_the_split():
    ids = token_ids("val")
    streams = eviction.eval_streams(50, 3)
    assert streams.shape == (3, 50) and streams.dtype == torch.long
    assert torch.equal(streams[0], ids[:50]) and torch.equal(streams[2], ids[-50:])
    start = round((len(ids) - 50) / 2)
    assert torch.equal(streams[1], ids[start : start + 50])


def test_budgets_bytes_and_the_full_budget(model):
    tokens = _streams(2, 24)
    rows = eviction.measure_budgets(model, tokens, [8, 24], chunk=1)
    by = {(r["name"], r["budget"]): r for r in rows}
    assert by[("dense", None)]["bytes"] == 24 * KV_BYTES_PER_TOKEN
    for name in ("window", "sinks"):
        assert by[(name, 8)]["bytes"] == 8 * KV_BYTES_PER_TOKEN
        assert by[(name, 8)]["bytes_vs_dense"] == pytest.approx(8 / 24)
    assert by[("h2o", 8)]["bytes"] == 8 * (KV_BYTES_PER_TOKEN + H2O_EXTRA_PER_TOKEN)
    with torch.no_grad():
        dense_ppl = _uncached_nll(model, tokens).double().mean().exp().item()
        dense_late = _uncached_nll(model, tokens)[:, 11:].double().mean().exp().item()
    for name in POLICIES:
        budget = None if name == "dense" else 24
        assert by[(name, budget)]["ppl"] == pytest.approx(dense_ppl, rel=1e-5), f"{name}: budget = length"
        assert by[(name, budget)]["ppl_late"] == pytest.approx(dense_late, rel=1e-5)
    for name in ("window", "sinks", "h2o"):
        assert by[(name, 8)]["ppl"] != pytest.approx(dense_ppl, rel=1e-5), f"{name} at 8 of 24 evicts"


def test_memory_is_flat_for_evicting_caches_and_linear_for_dense(model):
    tokens = _streams(1, 40)
    rows = {
        r["name"]: r["bytes"] for r in eviction.measure_memory(model, tokens, [4, 16, 40], budget=12, chunk=8)
    }
    assert rows["dense"] == {n: n * KV_BYTES_PER_TOKEN for n in (4, 16, 40)}
    assert rows["window"] == {n: 12 * KV_BYTES_PER_TOKEN for n in (4, 16, 40)}, "ring allocated at once"
    # the 4 sinks fill first; the window's ring is allocated (8 slots) with the first token after them
    assert rows["sinks"] == {
        4: 4 * KV_BYTES_PER_TOKEN,
        16: 12 * KV_BYTES_PER_TOKEN,
        40: 12 * KV_BYTES_PER_TOKEN,
    }
    h2o = KV_BYTES_PER_TOKEN + H2O_EXTRA_PER_TOKEN
    assert rows["h2o"] == {4: 4 * h2o, 16: 12 * h2o, 40: 12 * h2o}
    assert not model.allow_long_context


def test_position_buckets_split_the_stream(model):
    tokens = _streams(2, 50)
    rows = eviction.measure_position(model, tokens, budget=16, chunk=4, bucket=20)
    assert [r["name"] for r in rows] == list(POLICIES)
    dense = rows[0]
    assert [(lo, hi) for lo, hi, _ in dense["buckets"]] == [(1, 19), (20, 39), (40, 49)]
    with torch.no_grad():
        nll = _uncached_nll(model, tokens)  # column i predicts token i+1
    want = [nll[:, lo - 1 : hi].double().mean().exp().item() for lo, hi in [(1, 19), (20, 39), (40, 49)]]
    assert [b[2] for b in dense["buckets"]] == pytest.approx(want, rel=1e-5)
    assert rows[1]["buckets"][0][2] == pytest.approx(want[0], rel=1e-5), "window 16: no eviction before 16"
    assert rows[1]["bytes"] == 16 * KV_BYTES_PER_TOKEN


def test_chunking_rows_are_side_by_side(model):
    rows = eviction.measure_chunking(model, _streams(1, 30), [1, 8], budget=8, policies=["dense", "h2o"])
    assert [(r["name"], r["chunk"]) for r in rows] == [("dense", 1), ("dense", 8), ("h2o", 1), ("h2o", 8)]
    assert rows[0]["ppl_vs_first"] == rows[0]["time_vs_first"] == 1
    assert rows[1]["ppl_vs_first"] == pytest.approx(1, rel=1e-5), "dense is exact at any chunk"
    assert rows[3]["ppl_vs_first"] != pytest.approx(1, rel=1e-6), "h2o sees more with chunks of 8"


def test_head_pruning_rows_bytes_by_hand(model):
    tokens, calibration = _streams(2, 24), eviction.eval_streams(16, 2, split="train")
    rows = eviction.measure_head_pruning(model, tokens, calibration, [0, 5, 12], window=6, seeds=2)
    assert [(r["plan"], r["num_full"]) for r in rows] == [("dense", 12)] + [
        (plan, n) for n in (0, 5, 12) for plan in ("gradient", "variance", "distant_attention", "random")
    ]
    per_head_token = 2 * 32 * 4  # K and V of one KV head, fp32
    for r in rows[1:]:
        tokens_kept = r["num_full"] * 24 + (12 - r["num_full"]) * (4 + 6)  # streaming: 4 sinks + 6
        assert r["bytes"] == tokens_kept * per_head_token, r
        assert (
            r["fraction"] == pytest.approx(tokens_kept / (12 * 24)) and len(r["full_heads"]) == r["num_full"]
        )
    with torch.no_grad():
        dense_ppl = _uncached_nll(model, tokens).double().mean().exp().item()
    assert rows[0]["ppl"] == pytest.approx(dense_ppl, rel=1e-5)
    assert all(r["ppl"] == pytest.approx(dense_ppl, rel=1e-5) for r in rows if r["num_full"] == 12)
    assert all(r["ppl"] > dense_ppl * 1.001 for r in rows if r["num_full"] == 0), (
        "window 6 of 24 is lossless?"
    )
    random5 = next(r for r in rows if r["plan"] == "random" and r["num_full"] == 5)
    assert random5["ppl_min"] <= random5["ppl"] <= random5["ppl_max"]
    assert eviction.head_pruning_mismatches(rows) == []
    broken = [dict(r) for r in rows]
    broken[-1]["ppl"] *= 1.01  # an all-full plan that is not dense
    broken[1]["bytes_vs_dense"] += 0.01
    problems = eviction.head_pruning_mismatches(broken)
    assert len(problems) == 2 and "all 12 heads full" in problems[0] + problems[1]


# --- the command line -----------------------------------------------------------------------------------


def test_quick_run_prints_every_section_and_policy(capsys):
    assert main(["eviction", "--quick"]) == 0
    out = capsys.readouterr().out
    sections = out.split("\n[")
    for name in ("position", "budgets", "memory", "sinks", "chunking", "heads"):
        assert any(s.startswith(f"{name}]") for s in sections), f"no [{name}] section"
    for section in sections:
        if section.split("]")[0] in ("position", "budgets", "memory", "chunking"):
            lines = [line.split()[0] for line in section.splitlines()[1:] if line.strip()]
            assert set(POLICIES) <= set(lines), f"{section.splitlines()[0]}: policies missing"
    heads = next(s for s in sections if s.startswith("heads]"))
    for plan in ("dense", "gradient", "variance", "distant_attention", "random"):
        assert any(line.startswith(plan) for line in heads.splitlines()), f"no {plan} row in [heads]"
    assert "KV bytes/row" in out and "mass on first 4" in out


def test_the_subcommand_runs_as_a_module():
    res = subprocess.run(
        [sys.executable, "-m", "kvlib.bench", "eviction", "--quick", "--sections", "sinks", "--threads", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[sinks]" in res.stdout and "[position]" not in res.stdout
    code, out, _ = run_cli(main, [])
    assert code == 0 and "eviction" in out


EV = ["eviction", "--quick"]
CLI_CASES = [
    CliCase("budget-below-sinks", [*EV, "--budget", "4"], ("--budget", "--num-sinks", "got 4")),
    CliCase("budgets-below-sinks", [*EV, "--budgets", "2,16"], ("--budgets", "got 2")),
    CliCase("budget-len-past-context", [*EV, "--budget-len", "600"], ("--budget-len", "512", "got 600")),
    CliCase("sink-len-past-context", [*EV, "--sink-len", "513"], ("--sink-len", "512")),
    CliCase("memory-past-stream", [*EV, "--memory-at", "500"], ("--memory-at", "--stream-len")),
    CliCase("num-full-too-many", [*EV, "--num-full", "13"], ("--num-full", "12 KV heads", "13")),
    CliCase("num-full-negative", [*EV, "--num-full", "-1"], ("--num-full", "integers >= 0")),
    CliCase("calibration-too-short", [*EV, "--calibration-len", "9"], ("--calibration-len", "got 9")),
    CliCase("unknown-section", [*EV, "--sections", "position,nope"], ("--sections", "nope")),
    CliCase("chunk-zero", [*EV, "--chunk", "0"], ("--chunk", "integer >= 1")),
]


@pytest.mark.parametrize("case", params(CLI_CASES))
def test_bad_command_lines_exit_2(case):
    assert_cli_error(main, case)
