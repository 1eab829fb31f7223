"""Background loops that must stop when their task is cancelled.

A loop that retries on `except Exception` can swallow its own cancellation: redis-py
turns a CancelledError raised mid-command into a ConnectionError, so the loop logs
"failed", sleeps and goes on, and the event loop's shutdown waits on it forever.
`stop_if_cancelled` in such an except clause ends the loop as cancellation meant to.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled, whatever the exception says."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
