"""Reading a tool's output pipe piece by piece, for parsers that work while the tool prints."""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
from collections.abc import Callable

CHUNK = 1 << 16  # bigger pieces parse slower (cache)
PIPE_SIZE = 1 << 20  # the default 64 KiB would stop the writer whenever the reader is busy parsing
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python 3.10+ on Linux)


def widen(fd: int) -> None:
    """Give a pipe a 1 MiB buffer (where allowed), so the tool writing it rarely waits for us."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", F_SETPIPE_SZ), PIPE_SIZE)


def pump(fd: int, sink: Callable[[str], None]) -> BaseException | None:
    """Read ``fd`` to its end, passing the UTF-8 text to ``sink`` as it arrives. If ``sink`` fails,
    the pipe is still read to its end (a writer blocked on a full pipe would never finish) and the
    exception is returned, for the caller to raise once the writer is done."""
    widen(fd)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    failure: BaseException | None = None
    while True:
        data = os.read(fd, CHUNK)
        if failure is None:
            try:
                text = decoder.decode(data, final=not data)
                if text:
                    sink(text)
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                failure = e
        if not data:
            return failure

