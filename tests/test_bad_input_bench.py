"""Bad command lines for ``python -m kvlib.bench``: each exits 2 with a usage line naming the option.

Run in-process through ``kvlib.bench.__main__.main`` (argparse and each benchmark's ``validate`` stop
them before any model or kernel runs, so every case takes milliseconds); one subprocess proves the
real exit status of ``python -m kvlib.bench``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from bad_input import CliCase, assert_cli_error, params, run_cli

from kvlib.bench import cache_speed, fragmentation, paged_decode
from kvlib.bench.__main__ import main

pytestmark = [pytest.mark.ch02, pytest.mark.ch04, pytest.mark.ch06, pytest.mark.ch07]

NO_CUDA = not torch.cuda.is_available()
CS = ["cache-speed", "--model", "random"]
PD = ["paged-decode"]
FR = ["fragmentation"]
QZ = ["quantization"]

CASES = [
    # cache-speed (chapters 01-02)
    CliCase("cs-repeats-0", [*CS, "--repeats", "0"], ("--repeats", "integer >= 1", "got 0")),
    CliCase("cs-lengths-empty", [*CS, "--lengths", ""], ("--lengths", "comma-separated integers")),
    CliCase("cs-lengths-letters", [*CS, "--lengths", "a,b"], ("--lengths", "integer >= 1", "'a'")),
    CliCase("cs-lengths-zero", [*CS, "--lengths", "0,16"], ("--lengths", "integer >= 1", "got 0")),
    CliCase("cs-lengths-empty-item", [*CS, "--lengths", "16,,32"], ("--lengths", "'16,,32'")),
    CliCase("cs-lengths-negative", [*CS, "--lengths", "-4"], ("--lengths", "integer >= 1")),
    CliCase("cs-lengths-float", [*CS, "--lengths", "8.5"], ("--lengths", "'8.5'")),
    CliCase("cs-steps-0", [*CS, "--steps", "0"], ("--steps", "integer >= 1")),
    CliCase("cs-steps-word", [*CS, "--steps", "four"], ("--steps", "'four'")),
    CliCase("cs-update-steps-0", [*CS, "--update-steps", "0"], ("--update-steps", "integer >= 1")),
    CliCase("cs-batch-0", [*CS, "--batch", "0"], ("--batch", "integer >= 1")),
    CliCase("cs-seed-negative", [*CS, "--seed", "-1"], ("--seed", "integer >= 0")),
    CliCase(
        "cs-model-unknown",
        ["cache-speed", "--model", "gpt5"],
        ("--model", "gpt5", "shakespeare-mha", "random"),
    ),
    CliCase("cs-device-tpu", [*CS, "--device", "tpu"], ("--device", "cpu, cuda", "'tpu'")),
    CliCase("cs-device-garbage", [*CS, "--device", "cuda:x"], ("--device", "'cuda:x'")),
    CliCase(
        "cs-lengths-past-context", [*CS, "--lengths", "100000"], ("--lengths", "100000", "context of 4096")
    ),
    CliCase(
        "cs-shipped-context",
        ["cache-speed", "--lengths", "510", "--steps", "4"],
        ("--lengths", "510", "--steps", "shakespeare-mha", "512"),
    ),
    # paged-decode (chapter 07): bad values are errors on every machine, not ignored on the CPU
    CliCase(
        "pd-issue-batch-0", [*PD, "--batch", "0", "--block-size", "0", "--num-kv-heads", "3"], ("--batch",)
    ),
    CliCase("pd-block-size-0", [*PD, "--block-size", "0"], ("--block-size", "integer >= 1")),
    CliCase(
        "pd-kv-heads-3", [*PD, "--num-kv-heads", "3"], ("--num-kv-heads", "divide --num-heads (32)", "got 3")
    ),
    CliCase(
        "pd-kv-heads-above-q", [*PD, "--num-heads", "4", "--num-kv-heads", "8"], ("--num-kv-heads", "divide")
    ),
    CliCase("pd-q-heads-0", [*PD, "--num-heads", "0"], ("--num-heads", "integer >= 1")),
    CliCase("pd-head-dim-negative", [*PD, "--head-dim", "-1"], ("--head-dim", "integer >= 1")),
    CliCase("pd-seq-len-0", [*PD, "--seq-len", "0"], ("--seq-len", "integer >= 1")),
    CliCase("pd-iters-0", [*PD, "--iters", "0"], ("--iters", "integer >= 1")),
    CliCase("pd-splits-word", [*PD, "--splits", "many"], ("--splits", "'auto' or an integer >= 1", "many")),
    CliCase("pd-splits-0", [*PD, "--splits", "0"], ("--splits", "'auto'")),
    CliCase("pd-dtype-int8", [*PD, "--dtype", "int8"], ("--dtype", "int8", "bf16")),
    # fragmentation (chapter 06)
    CliCase("fr-requests-0", [*FR, "--requests", "0"], ("--requests", "integer >= 1")),
    CliCase("fr-budget-0", [*FR, "--budget", "0"], ("--budget", "integer >= 1")),
    CliCase("fr-max-len-0", [*FR, "--max-len", "0"], ("--max-len", "integer >= 1")),
    CliCase("fr-max-len-1", [*FR, "--max-len", "1"], ("--max-len", "integer >= 2", "got 1")),
    CliCase("fr-max-len-over-budget", [*FR, "--budget", "1000"], ("--max-len", "--budget (1000)", "2048")),
    CliCase("fr-block-sizes-zero", [*FR, "--block-sizes", "0,16"], ("--block-sizes", "integer >= 1")),
    CliCase("fr-block-sizes-letters", [*FR, "--block-sizes", "a"], ("--block-sizes", "'a'")),
    CliCase("fr-block-sizes-empty", [*FR, "--block-sizes", ""], ("--block-sizes", "comma-separated")),
    CliCase(
        "fr-block-larger-than-budget",
        [*FR, "--budget", "4096", "--block-sizes", "8192"],
        ("--block-sizes", "8192", "--budget 4096", "--max-len 2048"),
    ),
    CliCase(
        "fr-block-leaves-too-few-blocks",
        [*FR, "--budget", "2100", "--block-sizes", "1000"],
        ("--block-sizes", "1000", "2 whole blocks"),
    ),
    CliCase("fr-sharing-requests-0", [*FR, "--sharing-requests", "0"], ("--sharing-requests", ">= 1")),
    CliCase("fr-beam-requests-0", [*FR, "--beam-requests", "0"], ("--beam-requests", ">= 1")),
    CliCase(
        "fr-beam-more-than-sharing",
        [*FR, "--sharing-requests", "4", "--beam-requests", "5"],
        ("--beam-requests", "--sharing-requests (4)", "got 5"),
    ),
    CliCase(
        "fr-plot-no-folder", [*FR, "--plot", "/no/such/folder/u.png"], ("--plot", "/no/such/folder", "exist")
    ),
    CliCase("fr-plot-bad-suffix", [*FR, "--plot", "u.txt"], ("--plot", "png", "u.txt")),
    CliCase("fr-plot-no-suffix", [*FR, "--plot", "figure"], ("--plot", "svg", "figure")),
    # quantization (chapter 04)
    CliCase("qz-max-windows-0", [*QZ, "--max-windows", "0"], ("--max-windows", "integer >= 1", "got 0")),
    CliCase("qz-window-word", [*QZ, "--window", "long"], ("--window", "'long'")),
    CliCase("qz-window-past-context", [*QZ, "--window", "1024"], ("--window", "512", "1024")),
    CliCase("qz-window-1", [*QZ, "--window", "1", "--prefill", "1"], ("--window", "[2, 512]", "got 1")),
    CliCase("qz-prefill-0", [*QZ, "--prefill", "0"], ("--prefill", "integer >= 1")),
    CliCase("qz-prefill-not-below-window", [*QZ, "--window", "256"], ("--prefill", "--window (256)", "448")),
    CliCase("qz-batch-size-0", [*QZ, "--batch-size", "0"], ("--batch-size", "integer >= 1")),
    CliCase("qz-new-tokens-0", [*QZ, "--new-tokens", "0"], ("--new-tokens", "integer >= 1")),
    CliCase(
        "qz-new-tokens-past-context",
        [*QZ, "--new-tokens", "200"],
        ("--new-tokens", "--prompt-len (384)", "512"),
    ),
    CliCase("qz-repeats-0", [*QZ, "--repeats", "0"], ("--repeats", "integer >= 1")),
    CliCase("qz-threads-negative", [*QZ, "--threads", "-2"], ("--threads", "integer >= 0")),
    CliCase("qz-rows-unknown", [*QZ, "--rows", "fp32,int3"], ("--rows", "int3", "int4-kivi")),
    CliCase("qz-rows-empty", [*QZ, "--rows", ""], ("--rows", "comma-separated")),
    CliCase("qz-rows-empty-item", [*QZ, "--rows", "bf16,,fp8"], ("--rows", "'bf16,,fp8'")),
    CliCase("qz-model-unknown", [*QZ, "--model", "llama"], ("--model", "llama", "shakespeare-gqa")),
    # the entry point itself
    CliCase("unknown-benchmark", ["cache_speed"], ("unknown benchmark", "cache-speed")),
    CliCase("unknown-option", [*CS, "--lenghts", "8"], ("unrecognized arguments", "--lenghts")),
]

if NO_CUDA:
    CASES.append(
        CliCase(
            "cs-device-cuda-without-gpu",
            [*CS, "--device", "cuda"],
            ("--device", "'cuda'", "torch.cuda.is_available() is False"),
        )
    )


@pytest.mark.parametrize("case", params(CASES))
def test_bad_command_line_exits_2_with_a_usage_line(case: CliCase):
    err = assert_cli_error(main, case)
    if case.id != "unknown-benchmark":  # argparse's errors (all but this one) start with the usage line
        assert err.startswith("usage: python -m kvlib.bench "), err


def test_cache_speed_repeats_0_exits_2_in_a_real_process():
    """The issue's case, end to end: it used to print ``inf inf nanx`` and exit 0."""
    res = subprocess.run(
        [sys.executable, "-m", "kvlib.bench", "cache-speed", "--repeats", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "argument --repeats: expected an integer >= 1, got 0" in res.stderr
    assert "Traceback" not in res.stderr and "inf" not in res.stdout


def test_every_benchmark_validates_after_parsing(monkeypatch):
    """``__main__`` runs a module's ``validate(args, parser)`` before ``main`` (one generic hook)."""
    calls = []
    monkeypatch.setattr(paged_decode, "main", lambda args: calls.append("main") or 0)
    assert run_cli(main, [*PD, "--num-kv-heads", "3"])[0] == 2 and calls == []
    small = ["--batch", "2", "--seq-len", "64"]  # a shape the CPU interpreter accepts too
    assert run_cli(main, [*PD, "--num-kv-heads", "4", *small])[0] == 0 and calls == ["main"]


def test_good_values_still_parse():
    """Converted options keep the types ``main`` uses: lists of ints, 'auto' or an int, defaults."""
    import argparse

    def parse(module, argv):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        args = parser.parse_args(argv)
        if hasattr(module, "validate"):
            module.validate(args, parser)
        return args

    args = parse(cache_speed, ["--lengths", " 8, 16 ", "--model", "random"])
    assert args.lengths == [8, 16] and args.repeats == 3 and args.device == "cpu"
    assert max(parse(cache_speed, []).lengths) + 4 <= 512, "defaults must fit the shipped model's context"
    assert parse(paged_decode, ["--splits", "4"]).splits == 4 and parse(paged_decode, []).splits == "auto"
    frag = parse(fragmentation, ["--block-sizes", "16,32", "--budget", "2048", "--plot", "out.svg"])
    assert frag.block_sizes == [16, 32] and parse(fragmentation, []).block_sizes == [1, 8, 16, 32, 128, 256]
