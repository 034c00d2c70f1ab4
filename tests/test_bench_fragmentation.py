"""``python -m kvlib.bench fragmentation`` prints the utilization, prefix-sharing and beam tables."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from kvlib.bench.__main__ import main  # noqa: E402

pytestmark = pytest.mark.ch06


def test_fragmentation_tables_small_run(capsys, tmp_path):
    png = tmp_path / "util.png"
    args = ["fragmentation", "--requests", "200", "--budget", "16384", "--sharing-requests", "4"]
    code = main([*args, "--beam-requests", "2", "--plot", str(png)])
    out = capsys.readouterr().out
    assert code == 0, out
    for b in (1, 8, 16, 32, 128, 256):
        assert f"paged (block {b})" in out
    assert "contiguous (max reservation)" in out and "contiguous (oracle)" in out
    row = re.search(r"paged \(block 16\)\s+([\d.]+)%", out)
    assert row and float(row.group(1)) >= 96.0
    assert out.count("yes") == 8 and " NO" not in out, "each shared-prefix case must match the analytic value"
    assert "beam search k=4" in out and "parallel sampling n=2" in out
    assert png.exists() and png.stat().st_size > 10_000
