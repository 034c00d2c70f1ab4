"""No way around writing the code: a graded object must not be, or run, kvlib's reference for it.

The rule is enforced on what runs, not on spelling. `NaiveKVCache = dense.NaiveKVCache`, a
subclass that inherits the reference's methods, a wrapper around `kvlib.generate.generate`, or a
function that reaches the reference through a name a setup cell imported: each executes the
reference's code while the learner's object is being graded, and each scores 0 with a message that
says why. Mentioning kvlib in a comment, reading `MODEL_CONFIGS`, or calling a model or a cache that
the check itself hands over are all fine.

How: each check entry point is decorated with :func:`graded`, naming the kvlib modules or objects
that implement the exercise. While the check runs, a profile hook watches for a call into one of
their code objects; a call counts only when a frame of learner code (code outside autograder, kvlib
and the Python installation) sits between the check and the reference, so the check's own
reference computations are never mistaken for delegation. Aliases and inherited methods are also
caught before anything runs, by comparing code objects.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import CodeType, FrameType, FunctionType
from typing import Any

from .common import CheckFailed

_AUTOGRADER_DIR = str(Path(__file__).resolve().parents[1])
_LIBRARY_DIRS = tuple(
    {
        str(Path(p).resolve())
        for p in (sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("purelib"),
                  sysconfig.get_paths().get("platlib"), sys.prefix, sys.base_prefix)
        if p
    }
)  # fmt: skip


@functools.cache
def _kvlib_dir() -> str:
    import kvlib

    return str(Path(kvlib.__file__).resolve().parent)


def _is_triton_kernel(obj: Any) -> bool:
    """A ``@triton.jit`` object (JITFunction, or InterpretedFunction under TRITON_INTERPRET=1)."""
    return isinstance(getattr(obj, "fn", None), FunctionType) and type(obj).__name__.endswith(
        ("JITFunction", "InterpretedFunction")
    )


def _resolve(name: str) -> Any:
    """`kvlib.attention` (a module) or `kvlib.cache.dense.NaiveKVCache` (an object in a module)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        module, _, attr = name.rpartition(".")
        return getattr(_resolve(module), attr)


def _codes_of(obj: Any) -> Iterable[CodeType]:
    """The code objects that run when `obj` (function, class, property, module) is used."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        for f in (obj.fget, obj.fset, obj.fdel):
            if f is not None:
                yield from _codes_of(f)
    elif isinstance(obj, functools.partial):
        yield from _codes_of(obj.func)
    elif isinstance(obj, FunctionType):
        yield obj.__code__
        if hasattr(obj, "__wrapped__"):  # @torch.no_grad() and other functools.wraps decorators
            yield from _codes_of(obj.__wrapped__)
    elif _is_triton_kernel(obj):  # a @triton.jit kernel: its Python function (run by the interpreter)
        yield from _codes_of(obj.fn)
    elif inspect.isclass(obj):
        for value in vars(obj).values():
            yield from _codes_of(value)
    elif inspect.ismodule(obj):
        for value in vars(obj).values():
            defined_in = getattr(value.fn if _is_triton_kernel(value) else value, "__module__", None)
            if defined_in == obj.__name__:
                yield from _codes_of(value)


def reference_codes(names: Iterable[str]) -> dict[CodeType, str]:
    """Code object -> dotted name of the kvlib reference it belongs to."""
    kvlib_dir = _kvlib_dir()
    found: dict[CodeType, str] = {}
    for name in names:
        for code in _codes_of(_resolve(name)):
            if not code.co_filename.startswith(kvlib_dir):  # e.g. a dataclass's generated __init__
                continue
            qualname = getattr(code, "co_qualname", code.co_name)
            found.setdefault(code, name if name.endswith(qualname) else f"{name} ({qualname})")
    return found


@functools.cache
def _is_learner_file(filename: str) -> bool:
    """True for code outside autograder, kvlib and the Python installation (a notebook cell, say)."""
    if filename.startswith("<frozen") or filename.startswith("<string"):  # importlib, dataclass methods
        return False
    try:
        resolved = str(Path(filename).resolve())
    except (OSError, ValueError):
        resolved = filename
    return not resolved.startswith((_AUTOGRADER_DIR, _kvlib_dir(), *_LIBRARY_DIRS))


def _learner_objects_codes(obj: Any) -> list[tuple[str, CodeType]]:
    """(name, code) of every function that `obj` is made of, its inherited methods included."""
    if inspect.isclass(obj):
        out = []
        for klass in obj.__mro__:
            if klass is object:
                continue
            for name, value in vars(klass).items():
                out.extend((f"{obj.__name__}.{name}", c) for c in _codes_of(value))
        return out
    return [(getattr(obj, "__name__", "your function"), c) for c in _codes_of(obj)]


def _static_violation(obj: Any, refs: dict[CodeType, str]) -> str | None:
    for name, code in _learner_objects_codes(obj):
        if code in refs:
            return f"{name} is kvlib's {refs[code]} itself (an alias, an inherited method or a partial)"
    return None


class _Watcher:
    """A profile hook that records the first call into reference code made on behalf of learner code."""

    def __init__(self, refs: dict[CodeType, str], entry: FrameType | None) -> None:
        self.refs = refs
        self.entry = entry
        self.found: str | None = None

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or self.found is not None or frame.f_code not in self.refs:
            return
        self.check_callers(frame.f_back, "calls", frame.f_code)

    def check_callers(self, caller: FrameType | None, verb: str, code: CodeType) -> None:
        """Fail if a learner frame sits between `caller` (inclusive) and the check's entry."""
        while caller is not None and caller is not self.entry:
            if _is_learner_file(caller.f_code.co_filename):
                self.found = f"your code ({caller.f_code.co_name}) {verb} kvlib's {self.refs[code]}"
                # Stop the check here (CPython raises it in the called frame and unsets the hook), so
                # no "tests passed" line is printed before the verdict; `graded` reports it either way.
                raise CheckFailed(self.found)
            caller = caller.f_back


@contextlib.contextmanager
def _interpreted_kernels_unwatched(watcher: _Watcher) -> Iterator[None]:
    """Run Triton's interpreted kernel launches with the profile hook off, checking the kernel instead.

    Triton's CPU interpreter executes a kernel as many small Python calls, and the hook made chapter 07's
    checks 4-5 times slower (2.0 s against 0.47 s for one paged decode). A kernel body cannot call
    kvlib's Python functions (it is Triton code: tl operations and other jit functions), so what is left
    to watch is the launch itself: a reference kernel launched on behalf of learner code is delegation,
    caught here (the interpreter runs a rewritten copy of the kernel's function, which the hook would
    not recognise anyway). Only patched when Triton's interpreter is already imported (no import here)."""
    interpreter = sys.modules.get("triton.runtime.interpreter")
    if interpreter is None or not hasattr(interpreter, "InterpretedFunction"):
        yield
        return
    original = interpreter.InterpretedFunction.run  # kernel[grid](...) lands here, self.fn the kernel

    def launch_unwatched(self: Any, *args: Any, **kwargs: Any) -> Any:
        code = getattr(getattr(self, "fn", None), "__code__", None)
        if code in watcher.refs:
            watcher.check_callers(sys._getframe(1), "launches", code)
        hook = sys.getprofile()
        sys.setprofile(None)
        try:
            return original(self, *args, **kwargs)
        finally:
            sys.setprofile(hook)

    interpreter.InterpretedFunction.run = launch_unwatched
    try:
        yield
    finally:
        interpreter.InterpretedFunction.run = original


def delegation_message(exercise: str, how: str) -> str:
    return (
        f"{exercise} delegates to kvlib: {how}. kvlib is the reference the grader compares against, so "
        "this scores 0: write the code yourself (setup cells and the model/cache objects the tests "
        "pass in are fine to use)"
    )


def graded(exercise: str, *references: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a check `check(obj)`: fail if `obj` is, or reaches while graded, one of `references`.

    `references` are dotted kvlib names: modules (every function and class defined there) or objects.
    A delegation failure replaces whatever else the check found: it is the cause.
    """

    def decorate(check: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(check)
        def run(obj: Any, *args: Any, **kwargs: Any) -> None:
            refs = reference_codes(references)
            static = _static_violation(obj, refs)
            if static:
                raise CheckFailed(delegation_message(exercise, static))
            watcher = _Watcher(refs, sys._getframe())
            previous = sys.getprofile()
            with _interpreted_kernels_unwatched(watcher):
                sys.setprofile(watcher)
                try:
                    check(obj, *args, **kwargs)
                except BaseException:
                    if watcher.found is None:
                        raise
                finally:
                    sys.setprofile(previous)
            if watcher.found is not None:
                raise CheckFailed(delegation_message(exercise, watcher.found))

        run.references = references  # type: ignore[attr-defined]  # the tests build delegation forms
        return run

    return decorate
