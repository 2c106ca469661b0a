"""collect_node: run every node collector (read-only) and return a NodeSnapshot.

Also holds the small helpers collectors share: running a stock tool (inside a named network
namespace when asked) and reading /proc files, with failures turned into one-line reasons.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.netns import in_netns
from kubectl_proxydoctor.errors import SourceUnavailable
from kubectl_proxydoctor.snapshot import NodeSnapshot
from kubectl_proxydoctor.sources import Why

# collectors in the order they run; modules that do not exist (yet) are skipped
COLLECTOR_MODULES = ("kernel", "sysctl", "addresses", "iptables", "nftables", "ipvs", "kube_proxy",
                     "conntrack")
OPTIONAL_MODULES = {"conntrack"}  # only with --conntrack
NEEDS_ROOT = "needs root (CAP_NET_ADMIN)"
DEFAULT_TIMEOUT = 20.0
T = TypeVar("T")


@dataclass
class ToolResult:
    """What a tool printed, or why it could not run (``error`` set, one line)."""

    stdout: str = ""
    stderr: str = ""
    rc: int = 0
    error: str | None = None
    truncated: bool = False
    why: Why | None = None  # known at the source: the tool is missing, or reading needs root

    @property
    def ok(self) -> bool:
        return self.error is None


def netns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def _permission_problem(text: str) -> bool:
    low = text.lower()
    return any(s in low for s in ("permission denied", "must be root", "operation not permitted"))


def run_tool(argv: list[str], netns: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
             max_bytes: int | None = None) -> ToolResult:
    """Run a read-only tool (in ``netns`` when given); never raises for expected failures."""
    if shutil.which(argv[0]) is None:
        return ToolResult(rc=127, error=f"{argv[0]} not found", why=Why.TOOL_MISSING)
    if netns and shutil.which("ip") is None:
        return ToolResult(rc=127, error="ip not found (needed to enter the network namespace)",
                          why=Why.TOOL_MISSING)
    full = netns_prefix(netns) + argv
    try:
        if max_bytes is None:
            proc = subprocess.run(full, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
            out, err, rc, truncated = proc.stdout, proc.stderr, proc.returncode, False
        else:
            out, err, rc, truncated = _run_bounded(full, timeout, max_bytes)
    except subprocess.TimeoutExpired:
        return ToolResult(rc=124, error=f"{argv[0]} timed out after {timeout:.0f} s")
    except OSError as e:
        return ToolResult(rc=126, error=f"{argv[0]}: {e.strerror or e}")
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace").strip()
    result = ToolResult(stdout, stderr, rc, truncated=truncated)
    if rc != 0 and not truncated:
        first = stderr.splitlines()[0] if stderr else f"exit status {rc}"
        if _permission_problem(stderr) or (os.geteuid() != 0 and rc != 0 and not stdout):
            result.error, result.why = f"{NEEDS_ROOT}: {argv[0]}: {first}", Why.NEEDS_ROOT
        else:
            result.error = f"{argv[0]} failed: {first}"
    return result


def _run_bounded(argv: list[str], timeout: float, max_bytes: int) -> tuple[bytes, bytes, int, bool]:
    """Read at most ``max_bytes`` of stdout, then stop the tool (for huge conntrack tables)."""
    import selectors
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    truncated = False
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    try:
        open_streams = 2
        while open_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(argv, timeout)
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                (out if key.fileobj is proc.stdout else err).extend(chunk)
            if len(out) > max_bytes:
                truncated = True
                del out[max_bytes:]
                cut = out.rfind(b"\n")
                del out[cut + 1:]
                break
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return bytes(out), bytes(err), proc.returncode, truncated


@dataclass
class FileRead:
    """One file read: its text, or errno/error when it could not be read."""

    text: str | None = None
    errno: int | None = None
    error: str | None = None

    @property
    def missing(self) -> bool:
        return self.errno == 2  # ENOENT


def read_files(paths: list[str], netns: str | None = None) -> dict[str, FileRead]:
    """Read files (per-netns ones such as /proc/net/* and /proc/sys/net/* from inside ``netns``)."""
    if not netns:
        return _read(paths)
    try:  # on a thread inside the namespace, where /proc/sys/net is the namespace's
        return in_netns_thread(netns, lambda: _read(paths, thread_net=True))
    except OSError as e:
        why = e.strerror or str(e)
        error = f"{NEEDS_ROOT}: {why}" if e.errno in (1, 13) else why
        return {p: FileRead(errno=-1, error=f"cannot read inside network namespace {netns}: {error}")
                for p in paths}


def _read(paths: list[str], thread_net: bool = False) -> dict[str, FileRead]:
    """Each file's text or why not; ``thread_net``: /proc/net/* as this thread's network namespace
    sees it (/proc/net is the process's: its first thread's)."""
    out: dict[str, FileRead] = {}
    for p in paths:
        real = p
        if thread_net and p.startswith("/proc/net/"):
            real = "/proc/thread-self/net/" + p.removeprefix("/proc/net/")
        try:
            with open(real, "rb") as f:
                out[p] = FileRead(text=f.read().decode("utf-8", "replace"))
        except OSError as e:
            out[p] = FileRead(errno=e.errno, error=e.strerror or str(e))
    return out


def in_netns_thread(netns: str, work: Callable[[], T]) -> T:
    """``work()`` on a thread of its own inside network namespace ``netns`` (collect/netns.py)."""
    return in_netns(netns, work)


def _load_collector(name: str):
    try:
        return importlib.import_module(f"kubectl_proxydoctor.collect.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"kubectl_proxydoctor.collect.{name}":
            return None
        raise


def _run_collector(module, ctx: CollectContext) -> tuple[CollectContext, Exception | None]:
    """One collector into its own context: the context, and the exception it failed with."""
    try:
        module.collect(ctx)
    except Exception as e:  # noqa: BLE001 - recorded by the caller as the source's reason
        return ctx, e
    return ctx, None


def _merge(into: CollectContext, part: CollectContext) -> None:
    into.files.update(part.files)
    for source, status in part.sources.items():
        into.sources[source] = status
        if source not in part.states:
            into.states.pop(source, None)
    into.states.update(part.states)
    into.meta.update(part.meta)
    into.seeds.update(part.seeds)


def collect_node(netns: str | None = None, with_conntrack: bool = False,
                 node_name: str | None = None, parse: bool = True) -> NodeSnapshot:
    """Read this node's kube-proxy state (read-only) into a NodeSnapshot. ``parse``: also hand
    the snapshot what collectors parsed while reading (False when only the files are wanted)."""
    if netns and not os.path.exists(f"/run/netns/{netns}"):
        raise SourceUnavailable(f"network namespace {netns!r} does not exist (ip netns list)")
    ctx = CollectContext(netns=netns, parse=parse)
    modules = []
    for name in COLLECTOR_MODULES:
        if name in OPTIONAL_MODULES and not with_conntrack:
            continue
        module = _load_collector(name)
        if module is not None and hasattr(module, "collect"):
            modules.append((name, module))
    ran = [name for name, _ in modules]
    # the collectors are independent: they run at once (most wait on a tool or the kernel), each
    # into a context of its own, merged in COLLECTOR_MODULES order as if they had run in turn
    with ThreadPoolExecutor(max_workers=max(1, len(modules)), thread_name_prefix="collector") as pool:
        jobs = [(name, pool.submit(_run_collector, module, CollectContext(netns=netns, parse=parse)))
                for name, module in modules]
        for name, job in jobs:
            part, failure = job.result()
            _merge(ctx, part)
            if failure is not None:  # a collector bug must not hide what the others read
                ctx.unavailable(name, f"collector failed: {type(failure).__name__}: {failure}")
    meta = {
        "node": node_name or socket.gethostname(),
        "captured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "collected_by": "kubectl-proxydoctor collect",
        "collectors": ran,
    }
    if netns:
        meta["netns"] = netns
    meta.update(ctx.meta)
    for name in ctx.files:  # as NodeSnapshot.load does: a captured file is an "ok" source
        ctx.sources.setdefault(name, "ok")
    snapshot = NodeSnapshot(files=dict(ctx.files), sources=dict(ctx.sources), states=dict(ctx.states),
                            meta=meta, origin="live")
    for key, (inputs, value) in ctx.seeds.items():
        snapshot.seed(key, inputs, value)
    return snapshot
