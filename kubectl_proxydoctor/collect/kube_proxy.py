"""kube-proxy's own endpoints on 127.0.0.1: /metrics, /proxyMode, /statusz (10249), /healthz (10256),
its process (kube-proxy-cmdline.txt) and the tail of its log (kube-proxy.log).

/statusz exists from 1.33 (behind the ComponentStatusz gate): its ``Binary version:`` line is version
evidence. Any other answer there is recorded as "not served", which is not a read failure.

A 503 from /healthz is an answer, not a failure: its body is kept and the status recorded in
meta.json (``kube_proxy_healthz_status``). A refused connection means kube-proxy is not listening.
collect-node.sh writes the same files the same way.
"""

from __future__ import annotations

import glob
import os

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.node import NEEDS_ROOT, in_netns_thread
from kubectl_proxydoctor.kube_proxy_process import FILENAME, LOG_FILENAME, MAX_LOG_BYTES, tail_bytes

TIMEOUT = 2.0
MAX_BODY = 16 * 1024 * 1024
# kube-proxy's container log on the node: kubelet's pod log directory first, then the symlinks
LOG_GLOBS = ("/var/log/pods/*_kube-proxy-*/kube-proxy/*.log", "/var/log/containers/kube-proxy-*.log")
ENDPOINTS = (
    # (source, port, path, capture file)
    ("kube-proxy-metrics.txt", 10249, "/metrics", "kube-proxy-metrics.txt"),
    ("kube-proxy-mode.txt", 10249, "/proxyMode", "kube-proxy-mode.txt"),
    ("kube-proxy-healthz.json", 10256, "/healthz", "kube-proxy-healthz.json"),
    ("kube-proxy-statusz.txt", 10249, "/statusz", "kube-proxy-statusz.txt"),
)
EMBEDDING = ("k3s-server", "k3s-agent", "kubelite")  # run kubelet and kube-proxy inside (k3s, microk8s)
HOST_PROCESSES_HIDDEN = ("host processes not visible: neither kube-proxy nor kubelet in /proc (a container "
                         "without the host PID namespace?)")
STATUSZ_ABSENT = "not served (kube-proxy < 1.33, or its ComponentStatusz feature gate is off)"


def _get(port: int, path: str, timeout: float, limit: int) -> dict:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "kubectl-proxydoctor"})
            resp = conn.getresponse()
            body = resp.read(limit)
            return {"status": resp.status, "body": body.decode("utf-8", "replace")}
        finally:
            conn.close()
    except OSError as e:
        detail = getattr(e, "strerror", None) or str(e)
        return {"error": f"{type(e).__name__}: {detail}" if detail else type(e).__name__}
    except http.client.HTTPException as e:
        return {"error": f"bad HTTP answer: {type(e).__name__}"}


def fetch(specs: list[tuple[int, str]], netns: str | None = None, timeout: float = TIMEOUT) -> list[dict]:
    """GET each (port, path) on 127.0.0.1 (of ``netns`` when set): {status, body} or {error}."""
    def get_all() -> list[dict]:
        return [_get(port, path, timeout, MAX_BODY) for port, path in specs]

    if netns is None:
        return get_all()
    try:  # the sockets are made on a thread inside the namespace: no process to start
        return in_netns_thread(netns, get_all)
    except OSError as e:
        reason = e.strerror or str(e)
        return [{"error": f"{NEEDS_ROOT}: {reason}" if e.errno in (1, 13) else reason} for _ in specs]


def command_lines(names: tuple[str, ...], proc: str = "/proc") -> dict[str, list[str]]:
    """The command line (arguments joined by spaces) of every process with one of ``names``."""
    found: dict[str, list[str]] = {name: [] for name in names}
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        try:
            with open(f"{proc}/{pid}/comm", "rb") as f:
                comm = f.read().strip().decode("utf-8", "replace")
            if comm not in found:
                continue
            with open(f"{proc}/{pid}/cmdline", "rb") as f:
                args = f.read().rstrip(b"\0").split(b"\0")
        except OSError:  # the process ended while it was read
            continue
        found[comm].append(" ".join(a.decode("utf-8", "replace") for a in args))
    return found


def collect_process(ctx: CollectContext, proc: str = "/proc") -> None:
    """kube-proxy-cmdline.txt: one line per kube-proxy process; empty when none runs. With neither
    kube-proxy nor kubelet in sight, the host's processes are not visible (a container without the
    host PID namespace): unknown, never "not running"."""
    try:
        found = command_lines(("kube-proxy", "kubelet", *EMBEDDING), proc)
    except OSError as e:
        ctx.unavailable(FILENAME, f"{proc}: {e.strerror or e}")
        return
    lines = found["kube-proxy"]
    if not lines and os.geteuid() != 0:
        ctx.unavailable(FILENAME, f"{NEEDS_ROOT}: other users' processes may be hidden from non-root")
        return
    embedding = next((name for name in EMBEDDING if found[name]), None)
    if not lines and embedding:  # k3s, microk8s: kube-proxy is a part of another process
        ctx.unavailable(FILENAME, f"kube-proxy is embedded in {embedding} (no process of its own)")
        return
    if not lines and not found["kubelet"]:
        ctx.unavailable(FILENAME, HOST_PROCESSES_HIDDEN)
        return
    ctx.ok(FILENAME, FILENAME, "".join(line + "\n" for line in lines))


def newest_log() -> str | None:
    """kube-proxy's newest container log file on this node, or None."""
    for pattern in LOG_GLOBS:
        paths = glob.glob(pattern)
        if paths:
            return max(paths, key=lambda p: os.stat(p).st_mtime)
    return None


def collect_log(ctx: CollectContext) -> None:
    """kube-proxy.log: the last MAX_LOG_BYTES of kube-proxy's container log (as `tail -c`)."""
    try:
        path = newest_log()
    except OSError as e:
        ctx.unavailable(LOG_FILENAME, f"/var/log: {e.strerror or e}")
        return
    if path is None:
        ctx.unavailable(LOG_FILENAME, "kube-proxy log does not exist here (no /var/log/pods/*_kube-proxy-*/ "
                                      "or /var/log/containers/kube-proxy-*.log)")
        return
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - MAX_LOG_BYTES))
            data = tail_bytes(f.read())
    except OSError as e:
        reason = f"{path}: {e.strerror or e}"
        ctx.unavailable(LOG_FILENAME, f"{NEEDS_ROOT}: {reason}" if e.errno in (1, 13) else reason)
        return
    ctx.ok(LOG_FILENAME, LOG_FILENAME, data.decode("utf-8", "replace"))


def collect(ctx: CollectContext) -> None:
    """Capture metrics, proxy mode and healthz when kube-proxy answers on 127.0.0.1, its process
    and the tail of its log."""
    collect_process(ctx)
    collect_log(ctx)
    answers = fetch([(port, path) for _, port, path, _ in ENDPOINTS], ctx.netns)
    for (source, port, path, filename), answer in zip(ENDPOINTS, answers, strict=True):
        if "error" in answer:
            reason = answer["error"]
            if "ConnectionRefused" in reason:
                reason = f"nothing listens on 127.0.0.1:{port} (kube-proxy not running here?)"
            ctx.unavailable(source, f"127.0.0.1:{port}{path}: {reason}")
            continue
        status = int(answer["status"])
        body = answer["body"]
        if path == "/healthz":
            ctx.meta["kube_proxy_healthz_status"] = status
            if status in (200, 503):
                ctx.ok(source, filename, body)
                if status == 503:
                    ctx.sources[source] = "ok (HTTP 503: kube-proxy reports itself unhealthy)"
                continue
        if path == "/statusz" and (status != 200 or "version" not in body.lower()):
            ctx.unavailable(source, f"127.0.0.1:{port}{path} answered HTTP {status}: {STATUSZ_ABSENT}")
            continue
        if status != 200:
            ctx.unavailable(source, f"127.0.0.1:{port}{path} answered HTTP {status}")
            continue
        ctx.ok(source, filename, body)

