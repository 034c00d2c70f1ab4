"""kvlib.viz: plots build from numbers, and the memory calculator's state follows its widgets."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from kvlib.memory import MODEL_CONFIGS, GiB, kv_cache_bytes  # noqa: E402
from kvlib.viz import (  # noqa: E402
    MemoryCalculator,
    plot_bytes,
    plot_model_table,
    plot_prefill_decode,
    plot_time_per_token,
)

pytestmark = pytest.mark.ch02


def test_plots_have_the_series_they_were_given():
    fig = plot_time_per_token([64, 128], [0.001, 0.001], [0.002, 0.004])
    assert len(fig.axes[0].lines) == 2
    fig = plot_bytes([1, 2, 4], {"measured": [1, 2, 4], "formula": [1, 2, 4]}, "batch", "t", unit="B")
    assert [line.get_label() for line in fig.axes[0].lines] == ["measured", "formula"]
    assert len(plot_prefill_decode(0.01, [0.001] * 5).axes[0].patches) == 6
    assert len(plot_model_table().axes[0].patches) == len(MODEL_CONFIGS)
    with pytest.raises(ValueError):
        plot_time_per_token([1], [1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        plot_bytes([1, 2], {"a": [1]}, "x", "t")


def test_memory_calculator_tracks_its_sliders():
    calc = MemoryCalculator()
    assert calc.bytes == 2 * GiB and "2.00 GiB" in calc.label.value
    calc.set(seq_len=8192, batch=2)
    assert calc.bytes == 8 * GiB and calc.text == calc.label.value
    calc.dtype.value = "int8"
    assert calc.bytes == kv_cache_bytes(32, 32, 128, 8192, 2, "int8")
    calc.set(preset="Llama-2-70B")
    assert (calc.layers.value, calc.kv_heads.value) == (80, 8)
    assert calc.bytes == MODEL_CONFIGS["Llama-2-70B"].kv_bytes(8192, 2, "int8")
    calc.set(seq_len=131072, batch=64, dtype="fp32")
    assert calc.fraction > 1 and "does not fit" in calc.bar.value
    with pytest.raises(KeyError):
        calc.set(colour="red")
