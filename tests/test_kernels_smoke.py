"""The setup notebook's Triton smoke test."""

from __future__ import annotations

import pytest
import torch

from kvlib.kernels import MODE, smoke

pytestmark = pytest.mark.ch07


def test_smoke_test_reports_the_mode():
    mode = smoke.triton_smoke_test()
    assert mode == ("interpreter (CPU)" if MODE == "interpreter" else f"CUDA {torch.cuda.get_device_name()}")


def test_smoke_test_detects_zeros_and_wrong_values(monkeypatch):
    class FakeLaunch:
        def __init__(self, fill):
            self.fill = fill

        def __getitem__(self, grid):
            def run(x, y, n, alpha, BLOCK):
                self.fill(x, y, alpha)

            return run

    monkeypatch.setattr(smoke, "_scaled_add_one_kernel", FakeLaunch(lambda x, y, a: y.zero_()))
    with pytest.raises(RuntimeError, match="all zeros"):
        smoke.triton_smoke_test()
    monkeypatch.setattr(smoke, "_scaled_add_one_kernel", FakeLaunch(lambda x, y, a: y.copy_(a * x)))
    with pytest.raises(RuntimeError, match="disagrees with torch"):
        smoke.triton_smoke_test()
    monkeypatch.setattr(
        smoke, "_scaled_add_one_kernel", FakeLaunch(lambda x, y, a: y[:10].copy_(a * x[:10] + 1))
    )
    with pytest.raises(RuntimeError, match="untouched"):
        smoke.triton_smoke_test()
