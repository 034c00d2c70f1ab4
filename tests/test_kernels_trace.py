"""kvlib.kernels.trace: which elements Triton kernels load and store, recorded in the CPU interpreter.

The expected index sets are computed here from the block table and the cache layout, independently
of the kernel: a trace that recorded masked-off lanes, lost a program id or mapped addresses to the
wrong tensor would disagree with them.
"""

from __future__ import annotations

import pytest
import torch

import kvlib.kernels
from kvlib.kernels import MODE, build_paged_cache, paged_attention_decode

if MODE == "cuda":  # nothing to trace: CUDA kernels never pass through Python
    pytest.skip("trace_loads needs Triton's CPU interpreter", allow_module_level=True)

import triton  # noqa: E402  (after kvlib.kernels, which selects the interpreter)
import triton.language as tl  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

from kvlib.kernels.trace import Launch, trace_loads  # noqa: E402

pytestmark = pytest.mark.ch07

BATCH, NUM_HEADS, NUM_KV_HEADS, HEAD_DIM, BLOCK_SIZE = 3, 4, 2, 16, 8
LENS = [5, 17, 40]  # shorter than a block, two blocks and a bit, several 32-token tiles


@triton.jit
def _copy_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr, MASKED: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if MASKED:
        x = tl.load(x_ptr + offs, mask=offs < n)
    else:
        x = tl.load(x_ptr + offs)  # the bug: reads past n, silently, in the interpreter
    tl.store(y_ptr + offs, x, mask=offs < n)


@triton.jit
def _int_address_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    address = x_ptr.to(tl.int64, bitcast=True) + offs * 4  # a float32 pointer rebuilt from an integer
    x = tl.load(address.to(tl.pointer_type(tl.float32), bitcast=True))  # unmasked: reads past n
    tl.store(y_ptr + offs, x, mask=offs < n)


def _copy(x: torch.Tensor, y: torch.Tensor, n: int, block: int, masked: bool) -> None:
    _copy_kernel[(triton.cdiv(n, block),)](x, y, n, BLOCK=block, MASKED=masked)


@pytest.fixture(scope="module")
def paged():
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor(LENS, dtype=torch.int32)
    k = torch.randn(BATCH, max(LENS), NUM_KV_HEADS, HEAD_DIM, generator=g)
    v = torch.randn(BATCH, max(LENS), NUM_KV_HEADS, HEAD_DIM, generator=g)
    k_cache, v_cache, table = build_paged_cache(k, v, lens, BLOCK_SIZE, num_blocks=16, generator=g)
    q = torch.randn(BATCH, NUM_HEADS, HEAD_DIM, generator=g)
    return q, k_cache, v_cache, table, lens


def _expected_k(table: torch.Tensor, b: int, kvh: int, tokens: range) -> list[int]:
    """Flat indices into a (num_blocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM) cache of tokens' keys."""
    out = []
    for t in tokens:
        block, within = int(table[b, t // BLOCK_SIZE]), t % BLOCK_SIZE
        row = ((block * BLOCK_SIZE + within) * NUM_KV_HEADS + kvh) * HEAD_DIM
        out.extend(range(row, row + HEAD_DIM))
    return sorted(out)


def test_each_program_loads_exactly_its_sequences_keys(paged):
    q, k_cache, v_cache, table, lens = paged
    with trace_loads(k_cache=k_cache, v_cache=v_cache) as trace:
        paged_attention_decode(q, k_cache, v_cache, table, lens)
    assert trace.launches == [Launch("_paged_decode_kernel", (BATCH, NUM_KV_HEADS, 1))]
    assert trace.programs() == [(b, h, 0) for b in range(BATCH) for h in range(NUM_KV_HEADS)]
    assert trace.programs(launch=0) == trace.programs()
    for b in range(BATCH):
        for kvh in range(NUM_KV_HEADS):
            expected = _expected_k(table, b, kvh, range(LENS[b]))
            for name in ("k_cache", "v_cache"):  # same layout, same addresses
                got = trace.loaded(name, program=(b, kvh, 0))
                assert sorted(got.tolist()) == expected, f"program {(b, kvh)} {name}"
            # a trailing program axis may be left out
            assert torch.equal(
                trace.loaded("k_cache", program=(b, kvh)), trace.loaded("k_cache", program=(b, kvh, 0))
            )
    itemsize = k_cache.element_size()
    assert trace.bytes_loaded("k_cache") == sum(LENS) * NUM_KV_HEADS * HEAD_DIM * itemsize
    assert trace.loaded("k_cache").numel() == sum(LENS) * NUM_KV_HEADS * HEAD_DIM
    # the blocks the kernel read are those of the table, never the NaN-filled null block 0
    blocks = set((trace.loaded("k_cache") // (BLOCK_SIZE * NUM_KV_HEADS * HEAD_DIM)).tolist())
    used = {int(table[b, i]) for b in range(BATCH) for i in range(-(-LENS[b] // BLOCK_SIZE))}
    assert blocks == used and 0 not in blocks
    assert trace.stored("k_cache").numel() == 0 and trace.bytes_stored("k_cache") == 0


def test_split_k_shows_two_launches_and_the_split_programs(paged):
    q, k_cache, v_cache, table, lens = paged
    with trace_loads(k_cache=k_cache) as trace:
        paged_attention_decode(q, k_cache, v_cache, table, lens, num_splits=2, block_n=16)
    assert trace.launches == [
        Launch("_paged_decode_kernel", (BATCH, NUM_KV_HEADS, 2)),
        Launch("_combine_splits_kernel", (BATCH, NUM_HEADS, 1)),
    ]
    assert trace.programs(0) == [
        (b, h, s) for b in range(BATCH) for h in range(NUM_KV_HEADS) for s in range(2)
    ]
    assert trace.programs(1) == [(b, h, 0) for b in range(BATCH) for h in range(NUM_HEADS)]
    chunk = 32  # cdiv(cdiv(max_len 40, 2 splits), block_n 16) * 16
    for b in range(BATCH):
        for s in range(2):
            tokens = range(s * chunk, min(LENS[b], (s + 1) * chunk))
            got = trace.loaded("k_cache", program=(b, 1, s), launch=0)
            assert sorted(got.tolist()) == _expected_k(table, b, 1, tokens), f"sequence {b} split {s}"
    assert trace.loaded("k_cache", launch=1).numel() == 0  # the merge reads partials, not the cache
    assert trace.bytes_loaded("k_cache") == sum(LENS) * NUM_KV_HEADS * HEAD_DIM * k_cache.element_size()


def test_unmasked_load_past_the_end_is_visible_and_the_mask_removes_it():
    n, block = 10, 16
    buffer = torch.arange(64, dtype=torch.float32)  # the stray lanes read buffer[10:16], not foreign memory
    x, y, after = buffer[:n], torch.zeros(n), buffer[n:]
    with trace_loads(x=x, y=y, after=after) as trace:
        _copy(x, y, n, block, masked=False)
    assert trace.loaded("x").tolist() == list(range(block))  # indices >= n: the silent out-of-bounds read
    # attributed by where the pointer came from (x), not where the stray lanes land (after's memory)
    assert trace.loaded("after").numel() == 0
    assert trace.stored("y").tolist() == list(range(n))  # masked store: only the first n lanes
    assert trace.bytes_stored("y") == n * 4
    assert torch.equal(y, x)

    with trace_loads(x=x, y=y) as trace:
        _copy(x, y, n, block, masked=True)
    assert trace.loaded("x").tolist() == list(range(n))
    assert trace.loaded("y").numel() == 0 and trace.bytes_loaded("y") == 0  # watched but never loaded


def test_a_pointer_rebuilt_from_an_integer_is_attributed_by_address():
    n, block = 10, 16
    buffer = torch.arange(64, dtype=torch.float32)
    x, y, rest = buffer[:n], torch.zeros(n), buffer[n + 2 :]
    with trace_loads(x=x, rest=rest) as trace:
        _int_address_kernel[(1,)](x, y, n, BLOCK=block)
    assert torch.equal(y, x)
    assert trace.loaded("x").tolist() == list(range(n))  # lanes n, n+1 fall in no watched tensor: dropped
    assert trace.loaded("rest").tolist() == list(range(block - n - 2))


def test_several_launches_views_and_repeats():
    n, block = 40, 16
    x, y = torch.arange(n, dtype=torch.float32), torch.zeros(n)
    with trace_loads(x=x) as trace:
        _copy(x, y, n, block, masked=True)
        _copy(x[4:], y, n - 4, block, masked=True)  # a view of x: indices stay x's
    assert [launch.grid for launch in trace.launches] == [(3, 1, 1), (3, 1, 1)]
    assert trace.loaded("x", launch=0).tolist() == list(range(n))
    assert trace.loaded("x", launch=1).tolist() == list(range(4, n))
    assert trace.loaded("x", program=(2,), launch=1).tolist() == list(range(36, n))
    assert trace.bytes_loaded("x") == (n + n - 4) * 4  # repeats counted
    assert trace.programs() == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]


def test_addresses_are_mapped_when_the_interpreter_copies_arguments(monkeypatch):
    """With CUDA tensors the interpreter reads host copies; simulate that on CPU (storage.cpu() copies)."""
    monkeypatch.setattr(torch.UntypedStorage, "cpu", lambda self: self.clone())
    n = 10
    x, y = torch.arange(n, dtype=torch.float32), torch.zeros(n)
    with trace_loads(x=x, y=y) as trace:
        _copy(x, y, n, 16, masked=True)
    assert torch.equal(y, x)  # written to the copy, copied back by the interpreter
    assert trace.loaded("x").tolist() == list(range(n)) and trace.stored("y").tolist() == list(range(n))


def test_patches_are_undone_after_the_context_and_after_an_error():
    originals = {
        name: interpreter.InterpreterBuilder.__dict__[name]
        for name in ("create_masked_load", "create_masked_store", "create_addptr", "set_grid_idx")
    }
    cvt, init = interpreter._implicit_cvt, interpreter.GridExecutor.__dict__["_init_args_hst"]

    def unpatched():
        return (
            all(interpreter.InterpreterBuilder.__dict__[k] is v for k, v in originals.items())
            and interpreter._implicit_cvt is cvt
            and interpreter.GridExecutor.__dict__["_init_args_hst"] is init
        )

    x, y = torch.arange(8, dtype=torch.float32), torch.zeros(8)
    with trace_loads(x=x) as trace:
        _copy(x, y, 8, 16, masked=True)
    assert unpatched()
    _copy(x, y, 8, 16, masked=True)  # after the block: not recorded
    assert len(trace.launches) == 1 and trace.loaded("x").numel() == 8

    with pytest.raises(RuntimeError, match="learner's bug"), trace_loads(x=x):
        _copy(x, y, 8, 16, masked=True)
        raise RuntimeError("a learner's bug")
    assert unpatched()
    with trace_loads(x=x) as again:  # usable again
        _copy(x, y, 8, 16, masked=True)
    assert again.loaded("x").numel() == 8


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: trace_loads(), ValueError, "at least one tensor"),
        (lambda: trace_loads(x=[1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
        (lambda: trace_loads(x=torch.zeros(2, device="meta")), ValueError, "meta"),
    ],
    ids=["nothing", "list", "meta"],
)
def test_bad_arguments(call, error, words):
    with pytest.raises(error, match=words), call():
        pass


def test_bad_queries_nesting_and_cuda_mode(monkeypatch):
    x, y = torch.arange(8, dtype=torch.float32), torch.zeros(8)
    with trace_loads(x=x) as trace:
        _copy(x, y, 8, 16, masked=True)
        with pytest.raises(RuntimeError, match="nested"), trace_loads(y=y):
            pass
    with pytest.raises(KeyError, match=r"'y'.*\['x'\]"):
        trace.loaded("y")
    with pytest.raises(ValueError, match="launch"):
        trace.loaded("x", launch=1)
    with pytest.raises(ValueError, match="program"):
        trace.loaded("x", program=(0, 0, 0, 0))
    with pytest.raises(TypeError, match=r"program\[0\]"):
        trace.bytes_loaded("x", program=("0",))
    monkeypatch.setattr(kvlib.kernels, "MODE", "cuda")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"), trace_loads(x=x):
        pass
