"""Record which elements of named tensors Triton kernels load and store (CPU interpreter only).

Chapter 07 uses this to *see* a paged-attention kernel work: which physical KV blocks each program
reads, how many K/V bytes a kernel moves (a GQA kernel reads each key once per KV head, a
per-query-head kernel G times), whether it loads a slot past a sequence's end (the interpreter lets
an unmasked out-of-bounds load pass silently), and how many programs it launched::

    with trace_loads(k_cache=kc, v_cache=vc) as trace:
        out = paged_attention_decode(q, kc, vc, table, lens)
    trace.launches                          # [Launch(kernel='_paged_decode_kernel', grid=(B, Hkv, 1))]
    trace.loaded("k_cache", program=(0, 1)) # flat element indices program (0, 1, 0) loaded
    trace.bytes_loaded("k_cache")           # elements loaded x itemsize, repeats counted

How it works
------------
Triton 3.7's interpreter runs each program of a launch as Python over NumPy arrays: a pointer is a
``TensorHandle`` holding a uint64 array of byte addresses, and every ``tl.load``/``tl.store`` ends in
``InterpreterBuilder.create_masked_load``/``create_masked_store`` (plain, block-pointer and
descriptor loads all go through them). ``GridExecutor._init_args_hst`` first gives the kernel a
*host* view of each tensor argument: for a CPU tensor that is the same storage (``storage.cpu()``
returns the storage itself, so the kernel reads the caller's memory at ``data_ptr()``); a CUDA
tensor would be copied to the host and copied back after the launch. Inside this context those
functions are wrapped (and restored on exit, also on error) so that

- each launch's host view of every registered tensor is located through its storage (so the
  addresses are right whether or not the interpreter copied);
- each pointer argument is tagged with the address of the tensor it came from, and the tag follows
  the pointer through pointer arithmetic, broadcasts, reshapes and ``tl.where``. A load is then
  attributed by where its pointer came *from*, not where it lands, so an out-of-bounds load of
  ``x`` shows up as ``x`` indices ``>= x.numel()`` (or negative), even where the stray address
  falls inside another tensor. A pointer that lost its tag (built from an integer with
  ``int_to_ptr``) is attributed lane by lane to the registered tensor whose memory it falls in,
  and dropped if it falls in none;
- masked-off lanes are excluded; the current program id comes from the builder's ``grid_idx``.

Indices are in elements from the registered tensor's first element: ``(address - t.data_ptr()) //
t.element_size()``. For a contiguous tensor that is the flat index (``t.reshape(-1)[i]``; use
``torch.unravel_index`` for coordinates). For a non-contiguous view it is the offset in the
storage from the view's first element (``storage_offset`` relative), which its strides convert.
Atomics are not recorded.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kvlib.validate import describe, require_int, require_tensor

__all__ = ["Launch", "LoadTrace", "trace_loads"]

_TAG = "kvlib_trace_source"  # TensorHandle.attr key: data_ptr of the argument a pointer derives from

# builder methods that read or write memory: wrapped explicitly below, never by the tag propagation
_MEMORY_OPS = {
    "create_load", "create_store", "create_masked_load", "create_masked_store",
    "create_tensor_pointer_load", "create_tensor_pointer_store", "create_descriptor_load",
    "create_descriptor_store", "create_descriptor_gather", "create_descriptor_scatter",
    "create_atomic_cas", "create_atomic_rmw",
}  # fmt: skip

_active: LoadTrace | None = None  # the trace being recorded; one at a time


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the ``@triton.jit`` function's name and its 3-D grid."""

    kernel: str
    grid: tuple[int, int, int]


@dataclass(frozen=True)
class _HostView:
    """Where the interpreter sees a registered tensor during one launch (host byte addresses)."""

    base: int  # address of the tensor's first element
    lo: int  # its storage, [lo, hi)
    hi: int
    span_lo: int  # the bytes its elements cover, [span_lo, span_hi)
    span_hi: int
    itemsize: int


@dataclass
class _Event:
    kind: str  # "load" or "store"
    launch: int
    program: tuple[int, int, int]
    name: str
    indices: np.ndarray  # int64 element indices, masked-off lanes excluded
    nbytes: int  # lanes x the pointer's element size


def _host_view(tensor: torch.Tensor, storage_ptr: int) -> _HostView:
    itemsize = tensor.element_size()
    base = storage_ptr + tensor.storage_offset() * itemsize
    # lowest and highest element offsets of a (possibly strided) view
    low = sum(s * (n - 1) for s, n in zip(tensor.stride(), tensor.shape) if s < 0 and n > 0)
    high = sum(s * (n - 1) for s, n in zip(tensor.stride(), tensor.shape) if s > 0 and n > 0)
    end = high + 1 if tensor.numel() else 0
    storage_end = storage_ptr + tensor.untyped_storage().nbytes()
    return _HostView(base, storage_ptr, storage_end, base + low * itemsize, base + end * itemsize, itemsize)


def _unwrap(value: Any) -> Any:
    """The tensor inside triton's ``TensorWrapper`` (a reinterpreted dtype), else ``value``."""
    from triton.runtime.jit import TensorWrapper

    return value.base if isinstance(value, TensorWrapper) else value


def _storage_key(tensor: Any) -> tuple[str, int] | None:
    tensor = _unwrap(tensor)
    if not isinstance(tensor, torch.Tensor):
        return None
    return (str(tensor.device), tensor.untyped_storage().data_ptr())


class LoadTrace:
    """What the kernels launched inside :func:`trace_loads` loaded and stored from the named tensors.

    Every query takes ``program`` (a program id ``(x, y, z)``; missing trailing axes are 0) and
    ``launch`` (an index into :attr:`launches`) to narrow it; by default it covers everything.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self._tensors = tensors
        self.launches: list[Launch] = []
        self._programs: list[tuple[int, tuple[int, int, int]]] = []  # (launch, program) in run order
        self._events: list[_Event] = []
        self._hosts: dict[str, _HostView] = {}
        self._by_tag: dict[int, str | None] = {}
        self._pending_kernel = "?"
        self._pending_tag: int | None = None
        self._reset_hosts()

    @property
    def names(self) -> tuple[str, ...]:
        """The registered names."""
        return tuple(self._tensors)

    # ---- queries

    def programs(self, launch: int | None = None) -> list[tuple[int, int, int]]:
        """Sorted program ids ``(x, y, z)`` that ran: in launch ``launch``, or in any launch (each once)."""
        launch = self._check_launch(launch)
        return sorted({p for n, p in self._programs if launch is None or n == launch})

    def loaded(
        self, name: str, program: tuple[int, ...] | None = None, launch: int | None = None
    ) -> torch.Tensor:
        """int64 element indices of ``name`` loaded, in load order, repeats kept (see the module doc)."""
        return self._indices("load", name, program, launch)

    def stored(
        self, name: str, program: tuple[int, ...] | None = None, launch: int | None = None
    ) -> torch.Tensor:
        """int64 element indices of ``name`` stored, in store order, repeats kept."""
        return self._indices("store", name, program, launch)

    def bytes_loaded(
        self, name: str, program: tuple[int, ...] | None = None, launch: int | None = None
    ) -> int:
        """Bytes the kernels read from ``name``: elements loaded x element size, repeats counted."""
        return sum(e.nbytes for e in self._select("load", name, program, launch))

    def bytes_stored(
        self, name: str, program: tuple[int, ...] | None = None, launch: int | None = None
    ) -> int:
        """Bytes the kernels wrote to ``name``: elements stored x element size, repeats counted."""
        return sum(e.nbytes for e in self._select("store", name, program, launch))

    def __repr__(self) -> str:
        return (f"LoadTrace(names={list(self._tensors)}, launches={self.launches}, "
                f"events={len(self._events)})")  # fmt: skip

    def _indices(
        self, kind: str, name: str, program: tuple[int, ...] | None, launch: int | None
    ) -> torch.Tensor:
        parts = [e.indices for e in self._select(kind, name, program, launch)]
        if not parts:
            return torch.empty(0, dtype=torch.int64)
        return torch.from_numpy(np.concatenate(parts))

    def _select(
        self, kind: str, name: str, program: tuple[int, ...] | None, launch: int | None
    ) -> list[_Event]:
        if not isinstance(name, str) or name not in self._tensors:
            raise KeyError(
                f"no tensor named {name!r} is traced; the names registered are {list(self._tensors)}"
            )
        launch = self._check_launch(launch)
        program = self._check_program(program)
        return [
            e for e in self._events
            if e.kind == kind and e.name == name
            and (launch is None or e.launch == launch) and (program is None or e.program == program)
        ]  # fmt: skip

    def _check_launch(self, launch: int | None) -> int | None:
        if launch is None:
            return None
        return require_int(f"launch (an index into the {len(self.launches)} launches)", launch,
                           minimum=0, maximum=len(self.launches) - 1)  # fmt: skip

    @staticmethod
    def _check_program(program: tuple[int, ...] | None) -> tuple[int, int, int] | None:
        if program is None:
            return None
        if not isinstance(program, (tuple, list)) or not 1 <= len(program) <= 3:
            raise ValueError(
                f"program must be a program id (x, y, z) of 1 to 3 ints, got {describe(program)}"
            )
        ids = [require_int(f"program[{i}]", p, minimum=0) for i, p in enumerate(program)]
        return (*ids, *(0,) * (3 - len(ids)))

    # ---- recording (called from the patched interpreter)

    def _reset_hosts(self) -> None:
        """Before any launch maps them: a CPU tensor is read in place by the interpreter."""
        self._hosts = {
            n: _host_view(t, t.untyped_storage().data_ptr())
            for n, t in self._tensors.items()
            if t.device.type == "cpu"
        }
        self._by_tag = {}

    def _map_args(self, args_dev: list[Any], args_hst: list[Any]) -> None:
        """Locate each registered tensor's host storage through the launch's (device, host) argument pairs."""
        self._reset_hosts()
        host_storage: dict[tuple[str, int], int] = {}
        for dev, hst in zip(args_dev, args_hst):
            key = _storage_key(dev)
            if key is not None:
                host_storage[key] = _unwrap(hst).untyped_storage().data_ptr()
        for n, t in self._tensors.items():
            ptr = host_storage.get(_storage_key(t))
            if ptr is not None:
                self._hosts[n] = _host_view(t, ptr)

    def _name_for_tag(self, tag: int) -> str | None:
        """The registered tensor a pointer argument at ``tag`` belongs to: the same first element,
        else the view whose elements, else whose storage, contains it (first registered wins)."""
        if tag not in self._by_tag:
            hosts = self._hosts.items()
            name = next((n for n, h in hosts if h.base == tag), None)
            name = name or next((n for n, h in hosts if h.span_lo <= tag < h.span_hi), None)
            name = name or next((n for n, h in hosts if h.lo <= tag < h.hi), None)
            self._by_tag[tag] = name
        return self._by_tag[tag]

    def _record(self, kind: str, grid_idx: tuple[int, int, int], ptrs: Any, mask: Any) -> None:
        data = ptrs.data
        if mask is not None and not np.all(mask.data):
            addresses = data[np.broadcast_to(mask.data, data.shape)]
        else:
            addresses = data.reshape(-1)
        if addresses.size == 0:
            return
        addresses = np.ascontiguousarray(addresses, dtype=np.uint64).view(np.int64)
        bits = ptrs.get_element_ty().primitive_bitwidth
        lane_bytes = max(1, bits // 8)  # int1 pointers step by a byte, as in create_addptr
        launch = len(self.launches) - 1
        program = tuple(int(i) for i in grid_idx)
        tag = ptrs.attr.get(_TAG, self._pending_tag)
        if tag is not None:
            name = self._name_for_tag(tag)
            if name is not None:
                host = self._hosts[name]
                idx = (addresses - host.base) // host.itemsize
                self._events.append(_Event(kind, launch, program, name, idx, idx.size * lane_bytes))
            return
        for name, host in self._hosts.items():  # provenance lost: attribute by address, lane by lane
            inside = addresses[(addresses >= host.span_lo) & (addresses < host.span_hi)]
            if inside.size:
                idx = (inside - host.base) // host.itemsize
                self._events.append(_Event(kind, launch, program, name, idx, idx.size * lane_bytes))


@dataclass
class _Patches:
    """Attributes replaced for the duration of a trace, restored in reverse order."""

    saved: list[tuple[object, str, object]] = field(default_factory=list)

    def set(self, obj: object, name: str, value: object) -> None:
        self.saved.append((obj, name, obj.__dict__[name]))
        setattr(obj, name, value)

    def restore(self) -> None:
        while self.saved:
            obj, name, original = self.saved.pop()
            setattr(obj, name, original)


def _tag_of(handle: Any) -> int | None:
    attr = getattr(handle, "attr", None)
    return attr.get(_TAG) if isinstance(attr, dict) else None


def _is_pointer(handle: Any) -> bool:
    is_ptr = getattr(handle.dtype, "is_ptr", None)
    return bool(is_ptr()) if callable(is_ptr) else False


def _install(trace: LoadTrace, patches: _Patches) -> None:
    from triton.runtime import interpreter

    builder_cls = interpreter.InterpreterBuilder
    handle_cls = interpreter.TensorHandle

    def init_args_hst(original):
        @functools.wraps(original)
        def wrapper(self, args_dev, kwargs):
            args_hst, kwargs_hst = original(self, args_dev, kwargs)
            trace._pending_kernel = getattr(self.fn, "__name__", "?")
            keys = list(kwargs)
            trace._map_args(
                [*args_dev, *(kwargs[k] for k in keys)], [*args_hst, *(kwargs_hst[k] for k in keys)]
            )
            return args_hst, kwargs_hst

        return wrapper

    def implicit_cvt(original):
        @functools.wraps(original)
        def wrapper(arg):
            converted = original(arg)
            if hasattr(arg, "data_ptr") and isinstance(getattr(converted, "handle", None), handle_cls):
                converted.handle.attr[_TAG] = int(arg.data_ptr())
            return converted

        return wrapper

    def set_grid_dim(original):
        @functools.wraps(original)
        def wrapper(self, nx, ny, nz):
            original(self, nx, ny, nz)
            trace.launches.append(Launch(trace._pending_kernel, (int(nx), int(ny), int(nz))))

        return wrapper

    def set_grid_idx(original):
        @functools.wraps(original)
        def wrapper(self, x, y, z):
            original(self, x, y, z)
            trace._programs.append((len(trace.launches) - 1, (int(x), int(y), int(z))))

        return wrapper

    def masked_load(original):
        @functools.wraps(original)
        def wrapper(self, ptrs, mask, *args, **kwargs):
            trace._record("load", self.grid_idx, ptrs, mask)
            return original(self, ptrs, mask, *args, **kwargs)

        return wrapper

    def masked_store(original):
        @functools.wraps(original)
        def wrapper(self, ptrs, value, mask, *args, **kwargs):
            trace._record("store", self.grid_idx, ptrs, mask)
            return original(self, ptrs, value, mask, *args, **kwargs)

        return wrapper

    def via_base(original):
        """Block-pointer and descriptor loads/stores build untagged address arrays from a tagged
        base and then call create_masked_load/store: lend those the base's tag meanwhile."""

        @functools.wraps(original)
        def wrapper(self, ptr, *args, **kwargs):
            outer = trace._pending_tag
            trace._pending_tag = _tag_of(getattr(ptr, "base", None))
            try:
                return original(self, ptr, *args, **kwargs)
            finally:
                trace._pending_tag = outer

        return wrapper

    def propagate(original):
        """Any other op: a pointer result inherits the tag of the first tagged handle among its inputs."""

        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            if isinstance(result, handle_cls) and _TAG not in result.attr and _is_pointer(result):
                tag = next((t for t in map(_tag_of, (*args, *kwargs.values())) if t is not None), None)
                if tag is not None:
                    result.attr[_TAG] = tag
            return result

        return wrapper

    patches.set(interpreter.GridExecutor, "_init_args_hst",
                init_args_hst(interpreter.GridExecutor._init_args_hst))  # fmt: skip
    patches.set(interpreter, "_implicit_cvt", implicit_cvt(interpreter._implicit_cvt))
    wrappers = {
        "set_grid_dim": set_grid_dim, "set_grid_idx": set_grid_idx, "create_masked_load": masked_load,
        "create_masked_store": masked_store, "create_tensor_pointer_load": via_base,
        "create_tensor_pointer_store": via_base, "create_descriptor_load": via_base,
        "create_descriptor_store": via_base,
    }  # fmt: skip
    for name, original in list(vars(builder_cls).items()):
        if name in wrappers:
            patches.set(builder_cls, name, wrappers[name](original))
        elif name.startswith("create_") and name not in _MEMORY_OPS and callable(original):
            patches.set(builder_cls, name, propagate(original))


@contextlib.contextmanager
def trace_loads(**tensors: torch.Tensor) -> Iterator[LoadTrace]:
    """Record, per program, which elements of the named tensors the kernels launched inside load and store.

    Args:
        **tensors: the tensors to watch, by the name to query them with, e.g.
            ``trace_loads(k_cache=kc, v_cache=vc)``. Pass the tensors the kernel is launched with
            (or views sharing their storage); a copy the launcher makes is different memory.

    Yields:
        A :class:`LoadTrace`, filled as kernels run and complete after the block.

    Raises:
        RuntimeError: kernels run on CUDA (``kvlib.kernels.MODE == "cuda"``), where nothing passes
            through Python; or a trace is already being recorded (nesting is not supported).
        TypeError / ValueError: a value is not a tensor, or no tensor was given.
    """
    import kvlib.kernels as kernels

    global _active
    if kernels.MODE == "cuda" or not kernels.interpreter_active():
        raise RuntimeError(
            "trace_loads records loads in Triton's CPU interpreter, but kvlib.kernels runs kernels on CUDA "
            "here (MODE == 'cuda'): start Python with TRITON_INTERPRET=1 to trace"
        )
    if not tensors:
        raise ValueError("trace_loads needs at least one tensor to watch, e.g. trace_loads(k_cache=k_cache)")
    for name, value in tensors.items():
        require_tensor(name, value)
        if value.device.type == "meta":
            raise ValueError(f"{name} is on the meta device (no memory), so no kernel can load from it")
    if _active is not None:
        raise RuntimeError("trace_loads is already recording: nested traces are not supported")
    trace = LoadTrace(dict(tensors))
    patches = _Patches()
    _active = trace
    try:
        _install(trace, patches)
        yield trace
    finally:
        patches.restore()
        trace._pending_tag = None
        _active = None
