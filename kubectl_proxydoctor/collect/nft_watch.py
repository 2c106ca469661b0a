"""Time limits that scale with the table being listed, and progress on stderr for long reads.

The kernel hands a table's rules to nft in dump batches of at most 32 KiB, and resumes each batch
by walking every rule before it again, so listing time grows with the square of the table: 10,000
services x 10 endpoints (114k chains, 239k rules) took 25-55 s, most of it before nft printed a
byte. A fixed limit fails such a node; here the limit follows the table's chain count (known once
discovery's ``list chains`` has run) and a read that takes more than a few seconds says what it is
waiting for.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

BASE_LIMIT = 60.0  # seconds for any listing, however small
UNKNOWN_SIZE_LIMIT = 600.0  # while the table's size is not known (discovery not done or failed)
PER_CHAIN = 0.5e-3  # seconds per chain (linear part), and ...
SQUARE_UNIT = 10_000  # ... one second per (chains / 10k)^2 (the kernel's quadratic dump), ~4x measured
PROGRESS_AFTER = 5.0  # seconds before the first progress line, and between lines


def time_limit(chains: int | None) -> float:
    """Seconds a listing of a table with ``chains`` chains may take (None: not known yet)."""
    if chains is None:
        return UNKNOWN_SIZE_LIMIT
    return BASE_LIMIT + PER_CHAIN * chains + (chains / SQUARE_UNIT) ** 2


class Watch:
    """Watches one running listing: progress lines on ``out`` every few seconds once it runs long,
    and ``on_expiry``'s callback (once) when it outlives ``time_limit`` of its table's size."""

    def __init__(self, cmd: str, read_size: Callable[[], int], chains: Callable[[], int | None],
                 out: TextIO | None = None, every: float = PROGRESS_AFTER,
                 limit: Callable[[int | None], float] = time_limit) -> None:
        self.cmd = cmd
        self.read_size = read_size
        self.chains = chains
        self.out = out if out is not None else sys.stderr
        self.every = every
        self.limit = limit
        self.started = time.monotonic()
        self.expired = False
        self._expiry: Callable[[], object] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_expiry(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (e.g. kill the nft process) if the listing outlives its limit."""
        self._expiry = callback

    def limit_text(self) -> str:
        chains = self.chains()
        size = f"{chains} chains" if chains is not None else "a table of unknown size"
        return f"the {self.limit(chains):.0f} s allowed for {size}"

    def __enter__(self) -> Watch:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="nft-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait()):
            elapsed = time.monotonic() - self.started
            chains = self.chains()
            if not self.expired and elapsed > self.limit(chains):
                self.expired = True
                print(f"proxydoctor: `nft {self.cmd}` outlived {self.limit_text()}: stopping it",
                      file=self.out, flush=True)
                if self._expiry is not None:
                    self._expiry()
                return
            if elapsed >= self.every:
                self.out.write(self.progress(elapsed, chains) + "\n")
                self.out.flush()

    def _next_wait(self) -> float:
        """Until the next progress line, or the limit if that comes first."""
        elapsed = time.monotonic() - self.started
        to_limit = self.limit(self.chains()) - elapsed
        return max(0.05, min(self.every, to_limit + 0.05))

    def progress(self, elapsed: float, chains: int | None) -> str:
        size = f" ({chains:,} chains)" if chains is not None else ""
        read = self.read_size()
        what = (f"{read / 1e6:.0f} MB read so far" if read else
                "nothing printed yet: nft reads the whole table from the kernel first")
        return f"proxydoctor: reading `nft {self.cmd}`{size}: {elapsed:.0f} s, {what}"
