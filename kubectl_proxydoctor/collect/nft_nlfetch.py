"""Many nftables dump requests answered on a few netlink sockets at once, in request order.

Why: each set element dump makes the kernel find the set by walking the table's set list by name
(``nft_set_lookup``, and again in every dump callback), so one dump per set is quadratic in the
number of sets: at 10k services in the newest layout (15,800 sets, one anonymous map per service)
that is about 10 s of kernel time, the largest part of the read. nft pays it too. A dump's kernel
work runs inside the ``send``/``recv`` system calls, without the GIL, and a socket takes one dump
at a time (a second gets ``EBUSY``), so a few worker threads, each with a socket of its own, have
the kernel walk on every core at once, in rounds, while this thread waits; it decodes a round
once it has arrived.

Only what ``nft_netlink.read_only_request`` builds is sent (``GET`` dumps).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

from kubectl_proxydoctor.collect import nft_netlink as nl

# requests answered per round: bounds the raw answers held at once (a few MB)
WINDOW = 4096
# parts a round is split into per worker (the kernel's cost per set grows with its place in the
# table's set list: small parts even the workers out)
PARTS_PER_WORKER = 8


def default_workers() -> int:
    """Sockets (threads) to dump on: one per core the process may use, 2 to 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(2, min(4, cores))


class Fetcher:
    """Dump requests answered on ``workers`` sockets in ``netns`` (each made on first use)."""

    def __init__(self, netns: str | None = None, workers: int | None = None) -> None:
        self.netns = netns
        self._workers = workers or default_workers()
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="nft-dump")
        self._local = threading.local()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = nl.open_socket(self.netns)
            with self._lock:
                self._sockets.append(sock)
            self._local.sock = sock
        return sock

    def _dump_all(self, requests: list[bytes]) -> list[list[bytes]]:
        sock = self._socket()
        return [nl.dump_on(sock, request) for request in requests]

    def dumps(self, requests: Iterable[bytes]) -> Iterator[list[bytes]]:
        """Each request's message bodies (after nlmsghdr), in the order of ``requests``. They are
        answered in rounds of WINDOW requests, the workers dumping while this thread waits (and
        holds no GIL), then decoding the round: a thread decoding while the workers dump would
        hold the GIL they need after each system call, and they would wait for it most of the
        time (the convoy effect: measured slower than one socket). A failed dump raises here."""
        todo = iter(requests)
        while batch := list(islice(todo, WINDOW)):
            size = max(1, -(-len(batch) // (self._workers * PARTS_PER_WORKER)))
            parts = [batch[i:i + size] for i in range(0, len(batch), size)]
            for answers in self._pool.map(self._dump_all, parts):
                yield from answers

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
