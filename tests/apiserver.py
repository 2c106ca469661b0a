"""A small Kubernetes API server for tests: serves fixture objects over HTTP(S) on 127.0.0.1.

It speaks enough of the real API for the real ``kubernetes`` client: lists (cluster-wide and
namespaced) with real ``limit``/``continue`` pagination, single-object GETs, ``/version``, 403
Forbidden and 404 NotFound as real ``Status`` objects, optional bearer-token auth and TLS. It counts
every request so tests can check that a client really pages.

    server = FakeApiServer.from_api_json("tests/fixtures/iptables/healthy/api.json")
    server.forbid("list", "endpointslices")
    with server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml


@dataclass(frozen=True)
class Resource:
    """One API resource the server knows: its URL name, kind, group/version and scope."""

    plural: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``endpointslices.discovery.k8s.io`` as RBAC messages name it (core: just the plural)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource("services", "Service", "", "v1", True),
        Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True),
        Resource("nodes", "Node", "", "v1", False),
        Resource("configmaps", "ConfigMap", "", "v1", True),
        Resource("daemonsets", "DaemonSet", "apps", "v1", True),
        Resource("pods", "Pod", "", "v1", True),
    )
}
KIND_TO_RESOURCE = {r.kind: r for r in RESOURCES.values()}

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?/?$"
)


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A ``metav1.Status`` failure object, as the API server returns it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


class FakeApiServer:
    """The test API server. Start with ``start()`` or ``with server:``; ``url`` is its address."""

    def __init__(
        self,
        objects: list[dict],
        *,
        token: str | None = None,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        version: str = "v1.30.3",
    ) -> None:
        self.objects: dict[str, list[dict]] = {plural: [] for plural in RESOURCES}
        self._sorted: dict[tuple[str, str | None], tuple[int, list[dict]]] = {}  # -> (ids, items)
        for obj in objects:
            self.add(obj)
        self.token = token
        self.certfile = certfile
        self.keyfile = keyfile
        self.version = version
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query)
        self.auth_headers: list[str | None] = []
        self.forbidden: set[tuple[str, str, str | None]] = set()  # (verb, plural, namespace|None)
        self.expire_continue = False  # answer every continue token with 410 Gone
        self.failures: dict[str, int] = {}  # plural -> HTTP status to answer (e.g. 500, 429)
        self.resource_version = 1000
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -------------------------------------------------------------------------------

    @classmethod
    def from_api_json(cls, source: str | Path | dict, **kw) -> FakeApiServer:
        """Serve the items of an api.json-style v1 List (a path or the parsed document)."""
        doc = json.loads(Path(source).read_text()) if not isinstance(source, dict) else source
        return cls(list(doc.get("items", [])), **kw)

    def add(self, obj: dict) -> None:
        """Serve one more object (its ``kind`` decides the resource)."""
        resource = KIND_TO_RESOURCE.get(obj.get("kind", ""))
        if resource is None:
            raise ValueError(f"the test API server does not serve kind {obj.get('kind')!r}")
        self.objects[resource.plural].append(obj)
        self._sorted.clear()

    def forbid(self, verb: str, plural: str, namespace: str | None = None) -> None:
        """Answer ``verb`` (list/get) on ``plural`` with 403; ``namespace=None`` means everywhere."""
        if plural not in RESOURCES:
            raise ValueError(f"unknown resource {plural!r}")
        self.forbidden.add((verb, plural, namespace))

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        httpd.daemon_threads = True
        if self.certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="fake-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeApiServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- request accounting -------------------------------------------------------------------

    def count(self, path_prefix: str) -> int:
        """How many requests had a path starting with ``path_prefix``."""
        return sum(1 for _, path, _ in self.requests if path.startswith(path_prefix))

    def paths(self) -> Counter:
        return Counter(path for _, path, _ in self.requests)

    # -- the API ------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, authorization: str | None) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, parts.path, query))
            self.auth_headers.append(authorization)
        if self.token is not None and not _bearer_matches(authorization, self.token):
            return 401, status(401, "Unauthorized", "Unauthorized")
        if method != "GET":
            return 405, status(405, "MethodNotAllowed", f"the server does not allow {method} here")
        if parts.path == "/version":
            major, minor = self.version.lstrip("v").split(".")[:2]
            return 200, {"major": major, "minor": minor, "gitVersion": self.version,
                         "platform": "linux/amd64"}
        m = _PATH.match(parts.path)
        resource = RESOURCES.get(m.group("plural")) if m else None
        if m is None or resource is None:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        group = "" if m.group("core") else m.group("group")
        version = m.group("core") or m.group("version")
        ns, name = m.group("ns"), m.group("name")
        if (group, version) != (resource.group, resource.version) or (ns and not resource.namespaced):
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        verb = "get" if name else "list"
        if (verb, resource.plural, None) in self.forbidden or (verb, resource.plural, ns) in self.forbidden:
            return 403, self._forbidden(verb, resource, ns, name)
        if resource.plural in self.failures:
            code = self.failures[resource.plural]
            return code, status(code, "InternalError" if code >= 500 else "TooManyRequests",
                                f"injected failure {code} for {resource.plural}")
        if name:
            return self._get(resource, ns, name)
        return self._list(resource, ns, query)

    def _forbidden(self, verb: str, resource: Resource, ns: str | None, name: str | None) -> dict:
        scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
        what = f'{resource.qualified} "{name}"' if name else resource.qualified
        message = (
            f'{what} is forbidden: User "system:serviceaccount:default:proxydoctor" cannot {verb} '
            f'resource "{resource.plural}" in API group "{resource.group}" {scope}'
        )
        details = {"kind": resource.plural, "group": resource.group} if resource.group else {
            "kind": resource.plural}
        if name:
            details["name"] = name
        return status(403, "Forbidden", message, details)

    def _matching(self, resource: Resource, ns: str | None) -> list[dict]:
        """The objects of one resource (in one namespace), ordered like etcd keys; cached while the
        resource's objects are the same ones (tests may add or remove ``objects`` directly)."""
        objects = self.objects[resource.plural]
        fingerprint = hash(tuple(map(id, objects)))
        cached = self._sorted.get((resource.plural, ns))
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        items = [o for o in objects if ns is None or o["metadata"].get("namespace") == ns]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        self._sorted[(resource.plural, ns)] = (fingerprint, items)
        return items

    def _get(self, resource: Resource, ns: str | None, name: str) -> tuple[int, dict]:
        for obj in self._matching(resource, ns):
            if obj["metadata"]["name"] == name:
                return 200, obj
        details = {"name": name, "kind": resource.plural}
        if resource.group:
            details["group"] = resource.group
        return 404, status(404, "NotFound", f'{resource.qualified} "{name}" not found', details)

    def _list(self, resource: Resource, ns: str | None, query: dict[str, str]) -> tuple[int, dict]:
        items = self._matching(resource, ns)
        start = 0
        token = query.get("continue")
        if token:
            if self.expire_continue:
                return 410, status(410, "Expired", "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the continue "
                                   "parameter.")
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = int(state["start"])
            except (ValueError, KeyError, TypeError):
                return 400, status(400, "BadRequest", "continue key is not valid")
        try:
            limit = int(query.get("limit", "0") or 0)
        except ValueError:
            return 400, status(400, "BadRequest", "limit must be an integer")
        end = len(items) if limit <= 0 else min(len(items), start + limit)
        page = [_strip_type(o) for o in items[start:end]]
        meta: dict = {"resourceVersion": str(self.resource_version)}
        if end < len(items):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"start": end}).encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        return 200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": meta,
                     "items": page}


def _bearer_matches(authorization: str | None, token: str) -> bool:
    """RFC 7235: the scheme is case-insensitive (the client's in-cluster loader sends "bearer")."""
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and value == token


def _strip_type(obj: dict) -> dict:
    """List items come without kind/apiVersion from a real API server."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _handler_for(server: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            code, body = server.handle(self.command, self.path, self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer  # noqa: N815 (http.server naming)
        do_POST = _answer  # noqa: N815
        do_PUT = _answer  # noqa: N815
        do_DELETE = _answer  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def write_kubeconfig(
    path: str | Path,
    clusters: dict[str, str],
    *,
    current: str | None = None,
    token: str | None = None,
    ca_file: str | Path | None = None,
    namespace: str | None = None,
) -> Path:
    """Write a kubeconfig with one context per cluster (context, cluster and user share a name).

    ``clusters`` maps a name to a server URL; ``current`` is the current-context (first by default).
    """
    path = Path(path)
    names = list(clusters)
    doc: dict = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [],
        "contexts": [],
        "users": [],
        "current-context": current if current is not None else (names[0] if names else ""),
    }
    for name, server in clusters.items():
        cluster: dict = {"server": server}
        if ca_file:
            cluster["certificate-authority"] = str(ca_file)
        doc["clusters"].append({"name": name, "cluster": cluster})
        context: dict = {"cluster": name, "user": name}
        if namespace:
            context["namespace"] = namespace
        doc["contexts"].append({"name": name, "context": context})
        doc["users"].append({"name": name, "user": {"token": token} if token else {}})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
