"""Helpers for the serve tests: edit a capture's api.json like the API would change."""

from __future__ import annotations

import json
import os
from pathlib import Path


def drop_endpoint(api_json: Path, namespace: str, service: str, ip: str) -> None:
    """Remove the endpoint ``ip`` from the service's EndpointSlices, rewriting the file atomically."""
    doc = json.loads(api_json.read_text())
    found = False
    for item in doc["items"]:
        meta = item.get("metadata", {})
        if item.get("kind") != "EndpointSlice" or meta.get("namespace") != namespace:
            continue
        if meta.get("labels", {}).get("kubernetes.io/service-name") != service:
            continue
        before = len(item.get("endpoints") or [])
        item["endpoints"] = [e for e in item.get("endpoints") or [] if ip not in e.get("addresses", [])]
        found = found or len(item["endpoints"]) != before
    if not found:
        raise ValueError(f"no endpoint {ip} of {namespace}/{service} in {api_json}")
    write_atomic(api_json, json.dumps(doc, indent=1))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.parent.parent / f".{path.parent.name}-{path.name}.tmp"  # outside the capture
    tmp.write_text(text)
    os.replace(tmp, path)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, path: str = "/metrics", timeout: float = 5.0) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/PATH: (status, body)."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):  # not listening (yet)
        return 0, ""


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text (labels must match exactly those given)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def wait_for(predicate, timeout: float, step: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
