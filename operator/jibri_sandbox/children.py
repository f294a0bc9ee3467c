"""Child processes of the sandbox that must not outlive it.

Each part (API server, etcd, kubelet...) runs in its own process group, so a
Ctrl-C in the terminal reaches only the parent, which stops the parts in order;
and each asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG),
so a parent killed with SIGKILL leaves no orphans. The signal fires when the
*thread* that started the child ends, so start children from a long-lived thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1


def term_with_parent() -> None:
    """preexec_fn: SIGTERM this child when its parent goes away."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the child; SIGKILL its whole process group if it has not exited within `timeout`."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
