"""Work done inside another network namespace on a thread of its own.

setns(2) moves only the calling thread, so a short-lived thread enters the namespace, does the work
(a /proc read, an HTTP request, a netlink socket, which stays in the namespace it was made in) and
ends; the rest of the process never changes namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def in_netns(netns: str, work: Callable[[], T], error: type[OSError] = OSError) -> T:
    """``work()`` run inside network namespace ``netns`` (an ``ip netns`` name). ``error`` (an
    OSError kind) when the namespace cannot be entered; what ``work`` raises is raised here."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise error(err, f"cannot enter network namespace {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            outcome.append((True, work()))
        except BaseException as e:  # noqa: BLE001 - raised again on the caller's thread
            outcome.append((False, e))

    thread = threading.Thread(target=run, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]
