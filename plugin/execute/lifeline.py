"""A process that dies with its parent, `kill -9` included.

Worker processes (the server's run and validation workers, a distributed run's child) must not
outlive the process that started them: each asks the kernel for SIGKILL when its parent exits
(Linux's parent-death signal), and checks that the parent it was started by is still there, in
case that parent died before the request was made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """From now on this process gets SIGKILL when its parent exits (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent was already gone
        os._exit(1)
