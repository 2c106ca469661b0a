"""kube-proxy's own endpoints on 127.0.0.1: /metrics, /proxyMode, /statusz (10249), /healthz (10256).

/statusz exists from 1.33 (behind the ComponentStatusz gate): its ``Binary version:`` line is version
evidence. Any other answer there is recorded as "not served", which is not a read failure.

A 503 from /healthz is an answer, not a failure: its body is kept and the status recorded in
meta.json (``kube_proxy_healthz_status``). A refused connection means kube-proxy is not listening.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.node import run_tool

TIMEOUT = 2.0
MAX_BODY = 16 * 1024 * 1024
ENDPOINTS = (
    # (source, port, path, capture file)
    ("kube-proxy-metrics.txt", 10249, "/metrics", "kube-proxy-metrics.txt"),
    ("kube-proxy-mode.txt", 10249, "/proxyMode", "kube-proxy-mode.txt"),
    ("kube-proxy-healthz.json", 10256, "/healthz", "kube-proxy-healthz.json"),
    ("kube-proxy-statusz.txt", 10249, "/statusz", "kube-proxy-statusz.txt"),
)
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
    if netns is None:
        return [_get(port, path, timeout, MAX_BODY) for port, path in specs]
    package_root = str(Path(__file__).resolve().parents[2])
    boot = (f"import sys; sys.path.insert(0, {package_root!r}); "
            "from kubectl_proxydoctor.collect.kube_proxy import _main; _main()")
    argv = [sys.executable, "-c", boot, str(timeout), *(f"{port} {path}" for port, path in specs)]
    res = run_tool(argv, netns, timeout=timeout * len(specs) + 10)
    if not res.ok:
        return [{"error": res.error} for _ in specs]
    try:
        answers = json.loads(res.stdout)
    except json.JSONDecodeError:
        return [{"error": "no answer from the fetch inside the namespace"} for _ in specs]
    return answers if isinstance(answers, list) and len(answers) == len(specs) else [
        {"error": "bad answer from the fetch inside the namespace"} for _ in specs]


def collect(ctx: CollectContext) -> None:
    """Capture metrics, proxy mode and healthz when kube-proxy answers on 127.0.0.1."""
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


def _main() -> None:
    """Entry point of fetch() inside a network namespace: argv = timeout, "port path"..."""
    timeout = float(sys.argv[1])
    specs = [a.split(" ", 1) for a in sys.argv[2:]]
    print(json.dumps([_get(int(port), path, timeout, MAX_BODY) for port, path in specs]))
