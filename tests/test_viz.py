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


# --- chapter 09: the grown calculator (GQA/MLA, quantized KV, paging, tensor parallelism) ------------------


@pytest.mark.ch09
def test_grown_calculator_defaults_leave_chapter_02_numbers_alone():
    calc = MemoryCalculator()
    assert (calc.attention.value, calc.dtype.value, calc.block_size.value, calc.tp.value) == (
        "MHA/GQA",
        "fp16",
        1,
        1,
    )
    assert calc.bytes == calc.data_bytes == kv_cache_bytes(32, 32, 128, 4096, 1, "fp16")
    assert (calc.waste_bytes, calc.waste_fraction) == (0, 0.0)
    assert calc.token_bytes == MODEL_CONFIGS["Llama-2-7B"].kv_bytes_per_token("fp16")
    assert calc.per_gpu_bytes == calc.bytes and calc.kv_heads_per_gpu == 32 and calc.tp_message == ""
    assert calc.text == (
        "KV cache: 2.00 GiB (2,147,483,648 bytes), 512.00 KiB per token; 2.5% of A100/H100 80GB card: 80 GiB"
    )
    assert "MHA, 32 KV heads" in calc.details_text and "tp=1" in calc.details_text
    assert calc.more.selected_index is None and MemoryCalculator(show_all=True).more.selected_index == 0
    with pytest.raises(TypeError, match="show_all"):
        MemoryCalculator(show_all="yes")


@pytest.mark.ch09
def test_attention_kind_mla_uses_the_latent_formula():
    from kvlib.cache.mla import DEEPSEEK_V2_MLA as V2
    from kvlib.cache.mla import mla_kv_bytes_per_token

    calc = MemoryCalculator(preset="DeepSeek-V2 (MLA)", seq_len=8192, batch=4)
    assert calc.attention.value == "MLA" and (calc.kv_latent_dim.value, calc.rope_dim.value) == (512, 64)
    per_token = mla_kv_bytes_per_token(V2.num_layers, V2.kv_latent_dim, V2.rope_dim, "fp16")
    assert calc.token_bytes == per_token and calc.bytes == per_token * 8192 * 4
    assert "512 + RoPE key 64 = 576" in calc.details_text and "56.9x more" in calc.details_text
    calc.set(kv_latent_dim=256, rope_dim=32, dtype="bf16")
    assert calc.bytes == mla_kv_bytes_per_token(60, 256, 32, "bf16") * 8192 * 4
    calc.set(attention="MHA/GQA")  # its MHA twin: 128 heads of 128 on the KV-heads sliders
    assert calc.bytes == kv_cache_bytes(60, 128, 128, 8192, 4, "bf16")
    calc.set(preset="Llama-3-8B")
    assert (
        calc.attention.value == "MHA/GQA"
        and "GQA, 8 KV heads for 32 query heads (4 per group)" in calc.details_text
    )
    calc.set(preset="Llama-3-8B", attention="MLA")  # the preset loads first, the other values override it
    assert calc.bytes == mla_kv_bytes_per_token(32, 256, 32, "fp16") * 8192 * 4
    calc.set(attention="MHA/GQA", num_kv_heads=1)
    assert "MQA, 1 KV head for 32 query heads" in calc.details_text
    for bad in ({"attention": "GQA"}, {"attention": 1}):
        with pytest.raises(ValueError, match="attention must be one of"):
            calc.set(**bad)
    with pytest.raises(ValueError, match="rope_dim must be even"):
        calc.set(rope_dim=33)
    with pytest.raises(ValueError, match=r"kv_latent_dim must be an integer in \[16, 4096\]"):
        calc.set(kv_latent_dim=8)
    with pytest.raises(TypeError, match="kv_latent_dim"):
        calc.set(kv_latent_dim=512.0)
    with pytest.raises(ValueError, match="num_heads"):
        calc.set(num_heads=0)
    with pytest.raises(KeyError, match="unknown preset"):
        MemoryCalculator(preset="DeepSeek-V3")


@pytest.mark.ch09
def test_quantized_kv_counts_codes_and_group_scales():
    from kvlib.memory import quantized_kv_cache_bytes

    calc = MemoryCalculator(preset="Llama-3-70B", seq_len=8192, batch=16, dtype="int4 + scales")
    # KIVI's layout, no full-precision window: keys per channel over 32 tokens, values per token
    kivi = quantized_kv_cache_bytes(
        80, 8, 128, 8192, 16, 4, 32, residual=0, sinks=0, dtype="fp16", scheme="kivi"
    )
    assert calc.bytes == kivi and calc.group_size.value == 32
    # 4-bit codes plus an fp16 scale and minimum per 32 numbers: 4 + 32/32 = 5 bits a number
    assert calc.bytes * 8 == 5 * 2 * 80 * 8 * 128 * 8192 * 16 and "5.00 bits per number" in calc.details_text
    assert calc.token_bytes == quantized_kv_cache_bytes(80, 8, 128, 32, 1, 4, 32, 0, 0, "fp16") / 32
    calc.set(dtype="int8 + scales", group_size=128)
    assert calc.bytes == quantized_kv_cache_bytes(80, 8, 128, 8192, 16, 8, 128, 0, 0, "fp16")
    calc.set(seq_len=1000)  # 1000 = 7 * 128 + 104: the last 104 tokens are no whole key group yet
    assert calc.bytes == quantized_kv_cache_bytes(80, 8, 128, 1000, 16, 8, 128, 0, 0, "fp16")
    assert calc.bytes > kv_cache_bytes(80, 8, 128, 1000, 16, "int8")  # scales and fp16 tokens cost bytes
    calc.set(preset="DeepSeek-V2 (MLA)", dtype="int4 + scales", group_size=32, seq_len=4096)
    latent = quantized_kv_cache_bytes(60, 1, 576, 4096, 16, 4, 32, 0, 0, "fp16", "kivi", "per_token")
    assert calc.bytes == latent // 2 and "latent per token in groups of 32" in calc.details_text
    for bad in (33, "32", True):
        with pytest.raises(ValueError, match="group_size must be one of"):
            calc.set(group_size=bad)
    with pytest.raises(ValueError, match="dtype must be one of"):
        calc.set(dtype="int4+scales")


@pytest.mark.ch09
def test_paged_blocks_show_the_last_blocks_waste():
    from kvlib.paged.sharing import block_waste

    calc = MemoryCalculator(preset="Llama-3-8B", seq_len=1000, batch=8)
    for block in (16, 256):
        calc.set(block_size=block)
        slots = -(-1000 // block) * block
        assert calc.bytes == kv_cache_bytes(32, 8, 128, slots, 8, "fp16")
        assert calc.data_bytes == kv_cache_bytes(32, 8, 128, 1000, 8, "fp16")
        assert calc.waste_bytes == kv_cache_bytes(32, 8, 128, slots - 1000, 8, "fp16")
        assert calc.waste_fraction == pytest.approx(block_waste([1000], [1.0], block))
        assert f"{slots - 1000} empty slots x 8 sequences" in calc.details_text
    calc.set(seq_len=1024)
    assert calc.waste_bytes == 0  # 1024 tokens fill four blocks of 256 exactly
    calc.set(block_size=1)
    assert "every slot holds a token" in calc.details_text
    for bad in (0, 12, True, "16"):
        with pytest.raises(ValueError, match="block_size must be one of"):
            calc.set(block_size=bad)


@pytest.mark.ch09
def test_tensor_parallelism_splits_kv_heads_and_reports_impossible_splits():
    from dataclasses import replace

    from kvlib.memory import kv_bytes_per_gpu, kv_heads_per_gpu

    calc = MemoryCalculator(preset="Llama-3-70B", seq_len=8192, batch=16)
    shape = MODEL_CONFIGS["Llama-3-70B"]
    for tp in (1, 2, 4, 8, 16, 32):
        calc.set(tp=tp)
        assert calc.kv_heads_per_gpu == kv_heads_per_gpu(shape, tp)
        assert calc.per_gpu_bytes == kv_bytes_per_gpu(shape, tp, 8192, 16, "fp16")
        assert calc.fraction == calc.per_gpu_bytes / (80 * GiB) and calc.bytes == shape.kv_bytes(8192, 16)
    assert "each keeps its own copy" in calc.details_text and "4x the cache" in calc.details_text
    assert "per GPU (tp=32): 5.00 GiB" in calc.label.value
    calc.set(tp=3)  # 64 query heads do not split over 3 GPUs: a message, not an exception
    assert calc.per_gpu_bytes is None and calc.fraction is None and calc.kv_heads_per_gpu is None
    assert "tp=3 does not divide its 64 query heads" in calc.text and calc.tp_message in calc.bar.value
    calc.set(num_kv_heads=6, num_heads=48, tp=4)
    assert "the sliders' model: tp=4 does not divide its 6 KV heads" in calc.text
    calc.set(num_kv_heads=8, num_heads=64, tp=1)
    assert calc.per_gpu_bytes == calc.bytes and "per GPU" not in shown_text(calc)
    calc.set(dtype="int4 + scales", block_size=16, seq_len=1000, tp=4)  # the split composes with the rest
    quantized_per_gpu = MemoryCalculator(preset="Llama-3-70B", seq_len=1008, batch=16, dtype="int4 + scales")
    quantized_per_gpu.set(num_kv_heads=2)
    assert calc.per_gpu_bytes == quantized_per_gpu.bytes
    calc.set(preset="DeepSeek-V2 (MLA)", dtype="fp16", block_size=1, tp=8)  # the latent is kept whole
    assert calc.per_gpu_bytes == calc.bytes and "each of the 8 GPUs keeps all of it" in calc.details_text
    calc.set(tp=3)
    twin = replace(shape, name="DeepSeek-V2 (MLA)", num_heads=128, num_kv_heads=128)
    with pytest.raises(ValueError) as refused:
        kv_heads_per_gpu(twin, 3)
    assert str(refused.value) in calc.tp_message and calc.per_gpu_bytes is None
    with pytest.raises(ValueError, match=r"tp must be an integer in \[1, 64\]"):
        calc.set(tp=0)
    with pytest.raises(TypeError, match="tp"):
        calc.set(tp=2.0)
