"""``python -m kvlib.bench``: discovery, dispatch, and the CPU path of ``paged-decode``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import kvlib.bench as bench
from kvlib.bench.__main__ import main

pytestmark = pytest.mark.ch07


def test_listing_shows_every_benchmark_without_importing_it(capsys):
    code = (
        "import sys, kvlib.bench.__main__ as m; m.main([]); "
        "print(sorted(k for k in sys.modules if 'torch' in k))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("[]"), "listing must not import torch"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "paged-decode" in out and "fragmentation" in out
    names = bench.discover()
    assert names["paged-decode"].module == "kvlib.bench.paged_decode"
    assert "bandwidth" in names["paged-decode"].summary


def test_unknown_benchmark_is_reported(capsys):
    assert main(["no-such-bench"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_a_new_module_is_a_new_subcommand(tmp_path, monkeypatch, capsys):
    (tmp_path / "hello_world.py").write_text(
        textwrap.dedent('''
            """Says hello (a test benchmark)."""
            def add_arguments(parser):
                parser.add_argument("--who", default="world")
            def main(args):
                print("hello", args.who)
                return 0
        ''')
    )
    monkeypatch.setattr(bench, "__path__", [*bench.__path__, str(tmp_path)])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bench.importlib, "import_module", lambda name: __import__(name.rsplit(".", 1)[-1]))
    assert bench.discover()["hello-world"].summary == "Says hello (a test benchmark)."
    assert main(["hello-world", "--who", "class"]) == 0
    assert "hello class" in capsys.readouterr().out


def test_paged_decode_cpu_path_runs_the_interpreter_sweep():
    from kvlib.kernels import MODE

    if MODE == "cuda":
        pytest.skip("CUDA present: the GPU test covers the benchmark")
    res = subprocess.run(
        [sys.executable, "-m", "kvlib.bench", "paged-decode"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No CUDA device" in res.stdout and "interpreter" in res.stdout
    assert "5/5 cases agree with the reference" in res.stdout


def _cpu_bench(*flags: str) -> subprocess.CompletedProcess:
    from kvlib.kernels import MODE

    if MODE == "cuda":
        pytest.skip("CUDA present: the shape options time the GPU there")
    cmd = [sys.executable, "-m", "kvlib.bench", "paged-decode", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_paged_decode_cpu_path_honours_the_shape_options():
    res = _cpu_bench("--batch", "3", "--seq-len", "70", "--num-heads", "6", "--num-kv-heads", "2",
                     "--head-dim", "24", "--block-size", "8", "--dtype", "fp16", "--splits", "2")  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "at the shape you gave" in res.stdout and "tol = 2e-05 for float32" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.startswith("(70, 70, 70)"))
    assert row.split()[3:8] == ["6/2", "24", "8", "float16", "2"] and row.endswith("ok"), row
    assert "1/1 cases agree" in res.stdout


def test_paged_decode_cpu_path_refuses_a_shape_too_large_for_the_interpreter():
    res = _cpu_bench("--dtype", "fp16")  # the GPU default shape: 65,536 interpreter tiles
    assert res.returncode == 2, res.stdout + res.stderr
    assert "CPU interpreter" in res.stderr and "65,536 tiles" in res.stderr and "about 5 min" in res.stderr
    assert "Traceback" not in res.stderr
