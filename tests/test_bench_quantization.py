"""``python -m kvlib.bench quantization`` at a tiny size, and the functions the chapter 04 notebook calls."""

from __future__ import annotations

import pytest

from kvlib.bench.__main__ import main
from kvlib.bench.quantization import (
    QUANT_CONFIGS,
    as_table,
    config_names,
    measure_decode_time,
    measure_perplexity,
    select_configs,
)
from kvlib.model import load_model

pytestmark = [pytest.mark.ch04, pytest.mark.usefixtures("one_torch_thread")]

TINY = ["--max-windows", "1", "--window", "48", "--prefill", "40", "--prompt-len", "8", "--new-tokens", "2"]


@pytest.fixture(scope="module")
def model():
    return load_model("shakespeare-gqa")


@pytest.fixture(scope="module")
def rows(model):
    """Every row, one window of 96 tokens (prefill 40: the 56 decoded tokens fill KIVI groups of 32)."""
    return measure_perplexity(model, QUANT_CONFIGS, max_windows=1, window=96, prefill=40, progress=False)


def test_the_table_has_the_issues_rows():
    assert config_names()[0] == "fp32" and len(set(config_names())) == len(QUANT_CONFIGS) == 13
    by_name = {c.name: c for c in QUANT_CONFIGS}
    assert by_name["int8-token"].options["key_granularity"] == "per_token"
    assert by_name["int2-kivi-s4-r128"].options == dict(bits=2, group_size=32, residual=128, sinks=4)
    assert [c.name for c in select_configs(["int4-kivi"])] == ["fp32", "int4-kivi"], "fp32 always runs"
    with pytest.raises(ValueError, match="int3"):
        select_configs(["int3"])


def test_bytes_per_token_are_the_formulas(rows):
    for row in rows:
        assert row["bytes_per_token"] == row["formula_bytes_per_token"], row["name"]
    table = as_table(rows)
    assert table["fp32"]["bytes_per_token"] == 2 * 6 * 2 * 32 * 4  # K and V, 6 layers, 2 heads of 32, fp32
    assert table["fp32"]["bytes_vs_fp32"] == table["fp32"]["ppl_vs_fp32"] == 1
    assert table["bf16"]["bytes_vs_fp32"] == 0.5
    assert table["int2-kivi"]["bytes_per_token"] < table["int4-kivi"]["bytes_per_token"]
    assert table["int2-kivi-r128"]["bytes_per_token"] == 2 * 6 * 2 * 32 * 4, "96 tokens: all in the window"


def test_perplexity_ratios(rows):
    table = as_table(rows)
    assert abs(table["bf16"]["ppl_vs_fp32"] - 1) < 0.01, "bf16 storage should be within 1% of fp32"
    assert table["int2-kivi-r128"]["perplexity"] == table["fp32"]["perplexity"], "window covers everything"
    assert table["int2-kivi"]["perplexity"] != table["fp32"]["perplexity"], (
        "2 bits without a window is exact?"
    )
    assert {r["tokens"] for r in rows} == {96 - 40 + 1}


def test_decode_time_rows(model):
    configs = select_configs(["int4-kivi"])
    timing = measure_decode_time(model, configs, prompt_len=40, new_tokens=3, repeats=2, progress=False)
    assert [r["name"] for r in timing] == ["fp32", "int4-kivi"]
    assert timing[0]["time_vs_fp32"] == 1 and all(r["ms_per_token"] > 0 for r in timing)
    assert all(0 < r["cache_share"] < 1 for r in timing)
    with pytest.raises(ValueError, match="context of 512"):
        measure_decode_time(model, configs, prompt_len=500, new_tokens=20)


def test_small_run_prints_every_row(capsys):
    assert main(["quantization", *TINY, "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for name in config_names():
        assert any(line.startswith(f"{name} ") for line in out.splitlines()), f"no line for {name}"
    assert "KV B/token" in out and "in cache" in out


def test_rows_flag_runs_only_those_rows(capsys):
    assert main(["quantization", *TINY, "--repeats", "1", "--rows", "bf16"]) == 0
    lines = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert "fp32" in lines and "bf16" in lines and "int8-token" not in lines
