"""libnftables (Debian's ``libnftables1``) called in-process through ctypes, output streamed.

The ``nftables`` Python module (pip-nftables) only offers buffered output: a 10 MB listing comes
back in one piece when nft is done. Here each command prints to a pipe that the caller reads while
nft is still printing (printing is about 45% of a large listing), so the listing can be decoded at
the same time on the other core. Only the handful of libnftables calls a listing needs are bound.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Callable

from kubectl_proxydoctor.collect.pipes import pump

SONAME = "libnftables.so.1"
OUTPUT_HANDLE = 1 << 3  # NFT_CTX_OUTPUT_HANDLE
OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON

# libnftables 1.0.x is not safe to call from two threads at once, even with a context each
# (seen: "json.c:71: set_dtype_json: Assertion `__out' failed", an abort): calls take turns.
_LOCK = threading.Lock()


_LIST_RE = re.compile(r"list [\w ./\\-]+")  # nft identifiers: letters, digits, _ . / \\ -


def read_only(cmd: str) -> None:
    """Refuse anything but one ``list ...`` command (no ``;``-chained or other commands)."""
    if not _LIST_RE.fullmatch(cmd):
        raise ValueError(f"refusing `nft {cmd}`: proxydoctor only reads (one list command)")


class LibNftables:
    """One loaded libnftables; calling it runs one (read-only) command."""

    parallel = False  # calls take turns (see _LOCK)
    kernel = True  # reads this namespace's kernel (the netlink reader may read it first)

    def __init__(self, soname: str = SONAME) -> None:
        lib = ctypes.CDLL(soname)  # OSError when libnftables is not installed
        libc = ctypes.CDLL(None)
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        for name, restype, argtypes in (
            ("nft_ctx_new", vp, [ctypes.c_uint32]),
            ("nft_ctx_free", None, [vp]),
            ("nft_ctx_output_set_flags", None, [vp, ctypes.c_uint]),
            ("nft_ctx_set_output", vp, [vp, vp]),
            ("nft_ctx_buffer_error", ctypes.c_int, [vp]),
            ("nft_ctx_get_error_buffer", cp, [vp]),
            ("nft_run_cmd_from_buffer", ctypes.c_int, [vp, cp]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        libc.fdopen.restype, libc.fdopen.argtypes = vp, [ctypes.c_int, cp]
        libc.fclose.restype, libc.fclose.argtypes = ctypes.c_int, [vp]
        self._lib, self._libc = lib, libc

    def __call__(self, cmd: str, sink: Callable[[str], None], json: bool = True) -> tuple[int, str]:
        """Run ``cmd``; its output (JSON unless ``json`` is false) goes to ``sink`` in pieces as nft
        prints it. Returns the exit status and the error text. An exception from ``sink`` is
        raised after nft is done.

        nft runs on a thread of its own. Once it has printed, the result is returned while that
        thread still frees nft's context (its cache of the whole table: 0.05 s at 1k services),
        so the caller can go on meanwhile; the next call waits for it (calls take turns)."""
        read_only(cmd)
        lib, libc = self._lib, self._libc
        result: list[tuple[int, str]] = []
        done = threading.Event()
        _LOCK.acquire()  # released by the nft thread once it is done, or below if it never starts
        ctx = fp = old = None
        read_fd = write_fd = -1
        started = False
        try:
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                return 1, "nft_ctx_new failed"
            lib.nft_ctx_output_set_flags(ctx, (OUTPUT_JSON if json else 0) | OUTPUT_HANDLE)
            lib.nft_ctx_buffer_error(ctx)
            read_fd, write_fd = os.pipe()
            fp = libc.fdopen(write_fd, b"w")
            if not fp:
                raise OSError("fdopen failed")
            old = lib.nft_ctx_set_output(ctx, fp)

            def nft() -> None:  # ctypes releases the GIL for the calls: nft prints while we read
                try:
                    try:
                        rc = lib.nft_run_cmd_from_buffer(ctx, cmd.encode())
                        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode("utf-8", "replace")
                        result.append((rc, err))
                    finally:
                        lib.nft_ctx_set_output(ctx, old)
                        libc.fclose(fp)  # closes write_fd: the reader sees the end
                        done.set()
                    lib.nft_ctx_free(ctx)
                finally:
                    _LOCK.release()

            threading.Thread(target=nft, name="libnftables", daemon=True).start()
            started = True
        finally:
            if not started:  # nothing else will close, free and release
                if fp:
                    lib.nft_ctx_set_output(ctx, old)
                    libc.fclose(fp)
                elif write_fd >= 0:
                    os.close(write_fd)
                if read_fd >= 0:
                    os.close(read_fd)
                if ctx:
                    lib.nft_ctx_free(ctx)
                _LOCK.release()
        try:
            failure = pump(read_fd, sink)
        finally:
            os.close(read_fd)  # first: a writer still printing (we were interrupted) gets EPIPE
            done.wait()
        if failure is not None:
            raise failure
        return result[0] if result else (1, "nft_run_cmd_from_buffer did not return")
