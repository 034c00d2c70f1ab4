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
    assert (calc.layers.value, calc.num_kv_heads.value) == (80, 8)
    assert calc.bytes == MODEL_CONFIGS["Llama-2-70B"].kv_bytes(8192, 2, "int8")
    calc.set(seq_len=131072, batch=64, dtype="fp32")
    assert calc.fraction > 1 and "does not fit" in calc.bar.value
    with pytest.raises(KeyError):
        calc.set(colour="red")


def shown_text(calc: MemoryCalculator) -> str:
    """Everything the calculator's widget shows as text (labels and HTML), in order."""
    return "\n".join(str(c.value) for c in calc.widget.children if c.__class__.__name__ in ("Label", "HTML"))


def test_memory_calculator_shows_one_live_result():
    calc = MemoryCalculator(preset="Llama-3-8B", seq_len=8192, batch=8, dtype="bf16")
    assert "8.00 GiB" in shown_text(calc) and "85,899,345,920 bytes = 80.0 GiB = 85.9 GB" in shown_text(calc)
    calc.set(preset="Llama-2-70B")  # 80 layers x 8 KV heads: 2.5x the cache of Llama-3-8B
    assert "20.00 GiB" in shown_text(calc) and "8.00 GiB" not in shown_text(calc)
    calc.set(budget="RTX 4090: 24 GiB")
    assert calc.budget_text == "GPU budget: 25,769,803,776 bytes = 24.0 GiB = 25.8 GB"
    assert calc.budget_text in calc.bar.value and "80.0 GiB" not in shown_text(calc)
    # Displayed once: the live widget, and the current text where widgets do not render.
    bundle = calc._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == calc.widget.model_id
    assert bundle["text/plain"] == f"{calc.text}\n{calc.budget_text}" and "20.00 GiB" in bundle["text/plain"]


def test_chapter_02_calculator_cell_has_one_output(repo):
    """The notebook shows the calculator once, as the widget: no printed copy that goes stale."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(repo / "solutions" / "02_memory.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "MemoryCalculator(" in c.source]
    assert len(cells) == 1, "chapter 02 builds its calculator in one cell"
    probe = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from IPython.display import display\nfrom kvlib.viz import MemoryCalculator"
            ),
            nbformat.v4.new_code_cell(cells[0].source),
            nbformat.v4.new_code_cell('calc.set(preset="Llama-2-70B")\nprint(calc.label.value)'),
        ]
    )
    NotebookClient(probe, timeout=120, kernel_name="python3").execute()
    outputs = probe.cells[1].outputs
    kinds = [o.output_type for o in outputs]
    assert kinds in (["execute_result"], ["display_data"]), [o.get("text", o.output_type) for o in outputs]
    assert "application/vnd.jupyter.widget-view+json" in outputs[0].data
    assert "20.00 GiB" in probe.cells[2].outputs[0].text
