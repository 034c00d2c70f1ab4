"""Run code cells in a sandboxed kernel with a per-cell timeout, surviving hangs and crashes.

`GradingKernel.run(code)` never raises for learner misbehaviour: an infinite loop is
interrupted (and the kernel restarted if the interrupt is ignored), and a kernel that dies
(`os._exit`, a segfault, the memory cap) is reported as `status="dead"`; the caller decides
what to replay after `restart()`.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from kvlib.validate import require_int

from .sandbox_kernel import DEFAULT_MEMORY_MB

KERNEL_NAME = "kvcourse-grader"
SPEC_PREFIX = "kvcourse-kernelspec-"


class KernelUnavailable(RuntimeError):
    """The grading kernel could not start, or died in code that is not the learner's.

    Not a score: a cap too small for torch and the chapter's model, or a broken environment.
    """


def memory_cap_text(memory_mb: int | None) -> str:
    """`a memory cap of 512 MiB (--memory-mb 512)`: how error messages name the cap in force."""
    if memory_mb is None:
        return f"the default memory cap of {DEFAULT_MEMORY_MB} MiB"
    return f"a memory cap of {memory_mb} MiB (--memory-mb {memory_mb})"


def write_kernelspec(directory: Path) -> Path:
    """Write the sandbox kernelspec under `directory/kernels/` and return `directory`."""
    spec_dir = directory / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "autograder.sandbox_kernel", "-f", "{connection_file}"],
        "display_name": "KV course grader (memory-capped)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return directory


@dataclass
class CellResult:
    """What one cell did: `status` is ok, error, timeout or dead."""

    status: str
    ename: str = ""
    evalue: str = ""
    stdout: str = ""
    seconds: float = 0.0
    outputs: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class GradingKernel:
    """One memory-capped IPython kernel, started in `cwd`, driven cell by cell."""

    def __init__(self, cwd: Path, memory_mb: int | None = None, env: dict[str, str] | None = None):
        self._spec_root: Path | None = None  # private kernelspec folder: made by start(), removed by close()
        self.cwd = Path(cwd)
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("MPLBACKEND", "Agg")
        self.env.setdefault("HF_HUB_OFFLINE", "1")
        if memory_mb is not None:
            memory_mb = require_int("memory_mb", memory_mb, minimum=1)
            self.env["KVCOURSE_GRADER_MEMORY_MB"] = str(memory_mb)
        self.memory_mb = memory_mb
        self.km: KernelManager | None = None
        self.kc = None
        self.restarts = 0

    def start(self) -> None:
        if self._spec_root is None:
            self._spec_root = write_kernelspec(Path(tempfile.mkdtemp(prefix=SPEC_PREFIX)))
        ksm = KernelSpecManager(kernel_dirs=[str(self._spec_root / "kernels")])
        # ipc: local sockets in the spec folder, no TCP port (and no plain-TCP warning).
        self.km = KernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=ksm,
            transport="ipc",
            ip=str(self._spec_root / "kernel-ipc"),
        )
        # The kernel's own stderr (startup failures, not cell output: that travels over iopub) goes to
        # a log, so a kernel that cannot start is one line from us, not its traceback on the terminal.
        with open(self._spec_root / "kernel.log", "ab") as log:
            self.km.start_kernel(cwd=str(self.cwd), env=self.env, stdout=log, stderr=log)
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except (RuntimeError, TimeoutError) as exc:  # "Kernel died before replying to kernel_info"
            self.shutdown()
            raise KernelUnavailable(
                f"the grading kernel could not start under {memory_cap_text(self.memory_mb)} "
                f"({exc}; its log ends: {self.log_tail()}): "
                f"a cap below about 512 MiB leaves too little to import torch; try a larger --memory-mb "
                f"or leave it out (default {DEFAULT_MEMORY_MB})"
            ) from None

    def log_tail(self) -> str:
        """The last line the kernel process wrote to its stderr, for error messages."""
        path = self._spec_root / "kernel.log" if self._spec_root is not None else None
        lines = path.read_text(errors="replace").strip().splitlines() if path and path.exists() else []
        return lines[-1].strip()[:200] if lines else "nothing"

    def restart(self) -> None:
        self.shutdown()
        self.restarts += 1
        self.start()

    def shutdown(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - a dead kernel may already be gone
                pass
        self.kc = self.km = None

    def close(self) -> None:
        """Shut down and remove the private kernelspec folder (a class of 100 submissions made 100)."""
        self.shutdown()
        if self._spec_root is not None:
            shutil.rmtree(self._spec_root, ignore_errors=True)
            self._spec_root = None

    def __enter__(self) -> GradingKernel:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, code: str, timeout: float = 60.0) -> CellResult:
        """Execute `code`; wait at most `timeout` seconds for it to finish."""
        if self.kc is None or self.km is None:
            raise RuntimeError("GradingKernel.run: start() the kernel first")
        start = time.monotonic()
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False)
        result = CellResult(status="ok")
        stdout: list[str] = []
        deadline = start + timeout
        while True:
            if time.monotonic() > deadline:
                result = self._interrupt(msg_id, timeout)
                break
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                if not self.km.is_alive():
                    result = CellResult("dead", "KernelDied", "the kernel process exited or crashed")
                    break
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                result = CellResult("error", content["ename"], content["evalue"])
            elif kind in ("display_data", "execute_result"):
                result.outputs.append(content.get("data", {}))
            elif kind == "status" and content["execution_state"] == "idle":
                break
        result.stdout = "".join(stdout)
        result.seconds = time.monotonic() - start
        return result

    def _interrupt(self, msg_id: str, timeout: float) -> CellResult:
        """Interrupt a cell that ran past its timeout; restart if the kernel ignores it."""
        self.km.interrupt_kernel()
        grace = time.monotonic() + 5
        while time.monotonic() < grace:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                return CellResult("timeout", "Timeout", f"the cell did not finish within {timeout:.0f} s")
        self.restart()
        return CellResult(
            "dead", "Timeout", f"the cell did not finish within {timeout:.0f} s and ignored the interrupt"
        )
