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
    # shared-prefix table: 4 cases x 2 caches, each row ending in its within-one-block-per-group verdict
    prefix_rows = re.findall(r"^\s*\d+\s+\d+\s+\d+\s+\d+\s+(hash|radix)\s.*\s(yes|NO)$", out, re.M)
    assert len(prefix_rows) == 8, out
    assert all(ok == "yes" for _, ok in prefix_rows), "each shared-prefix case must match the analytic value"
    # sharing table: every row names the paper's range and says where the measured saving falls
    rows = re.findall(
        r"^(sharegpt|alpaca)\s+(parallel sampling n=\d|beam search k=\d)\s+([\d.]+)%\s+\d+\s+"
        r"([\d.]+)%-([\d.]+)%\s+(in range|below|above)$",
        out,
        re.M,
    )
    assert len(rows) == 12, out
    for *_, saving, lo, hi, verdict in rows:
        x, lo, hi = float(saving), float(lo), float(hi)
        assert verdict == ("below" if x < lo else "above" if x > hi else "in range")
    outside = sum(r[-1] != "in range" for r in rows)
    assert f"{outside} of 12 rows fall outside the paper's range" in out
    # only the max-reservation row carries the paper's 20-40% label
    (label,) = [line for line in out.splitlines() if "20-40%" in line]
    assert "max reservation" in label and "oracle" not in label
    assert png.exists() and png.stat().st_size > 10_000
