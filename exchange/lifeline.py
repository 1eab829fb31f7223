"""Worker processes that stop with their supervisor. A supervisor killed with SIGKILL
gets no chance to stop its children: orphaned bid servers would go on answering on
the shared port, and ledger workers booking, with nobody left to restart or stop
them. Each child asks the kernel for SIGTERM, its graceful stop, when its parent dies."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def stop_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when `parent_pid`, the process that started it, dies.

    Linux only (elsewhere nothing is done). The kernel watches the parent *thread*
    that started this process, so a supervisor must start its children from a thread
    that lives as long as they should.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # it died before we asked: stop now
        os.kill(os.getpid(), signal.SIGTERM)
