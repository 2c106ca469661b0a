"""The HTTP endpoint: /metrics (Prometheus text format), /healthz, and /verdict (JSON)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kubectl_proxydoctor.errors import UsageError


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (``[v6]:PORT`` or ``:PORT`` for every address) into (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 0.0.0.0:9977")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class MetricsServer:
    """Serves the registry and two callbacks on a background thread."""

    def __init__(self, listen: str, registry: CollectorRegistry, health: Callable[[], tuple[bool, str]],
                 verdict: Callable[[], dict]) -> None:
        host, port = parse_listen(listen)
        handler = _handler(registry, health, verdict)
        try:
            server_class = _V6Server if ":" in host else ThreadingHTTPServer
            self.httpd: ThreadingHTTPServer = server_class((host, port), handler)
        except OSError as e:
            raise UsageError(f"--listen {listen}: cannot listen ({e.strerror or e})") from e
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> str:
        address = self.httpd.server_address
        host = address[0] if isinstance(address[0], str) else address[0].decode()
        port = address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(registry: CollectorRegistry, health: Callable[[], tuple[bool, str]],
             verdict: Callable[[], dict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/livez"):
                ok, why = health()
                self._send(200 if ok else 503, "text/plain; charset=utf-8", (why + "\n").encode())
            elif path == "/verdict":
                self._send(200, "application/json", json.dumps(verdict(), indent=1).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /verdict\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler
