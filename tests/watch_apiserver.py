"""The test API server with watch and Events: what `serve` needs from a real API server.

    server = WatchApiServer.from_api_json(api_json)
    with server:
        server.apply(obj)                 # add or replace: a MODIFIED/ADDED watch event
        server.delete("Service", "default", "web")
        server.compact()                  # older resourceVersions are gone: watches get 410
        server.events                     # Events created (POST) and patched (PATCH), by (ns, name)

Watches (``?watch=true&resourceVersion=N``) stream every change newer than N as one JSON line per
event, chunked like the real server, until ``timeoutSeconds`` or the server stops; a version older
than the last compaction gets an ERROR event with a 410 Expired Status, as from the real one.
``fieldSelector=metadata.name=X`` is honoured (kube-proxy and serve watch their own Node).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

from tests.apiserver import _PATH, KIND_TO_RESOURCE, RESOURCES, FakeApiServer, _handler_for, status
from tests.node_apiserver import _QuietServer


class WatchApiServer(FakeApiServer):
    def __init__(self, objects: list[dict], **kw) -> None:
        super().__init__([], **kw)
        self.log: list[tuple[int, str, str, dict]] = []  # (resourceVersion, type, plural, object)
        self.compacted = 0
        self.changed = threading.Condition()
        self.events: dict[tuple[str, str], dict] = {}
        self.event_requests: list[tuple[str, str, dict]] = []  # (method, path, body)
        self.watch_requests = 0
        self.stopping = False
        self.forbid_events = False  # answer Event creation and patches with 403
        self.paused = False  # watches deliver nothing while set (events queue up)
        self.generation = 0  # drop_watches() ends every open watch
        for obj in objects:
            self._store(obj)

    # -- changing the API -----------------------------------------------------------------------

    def _store(self, obj: dict) -> None:
        self.resource_version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        obj["metadata"].setdefault("uid", f"uid-{obj['kind']}-{obj['metadata']['name']}")
        resource = KIND_TO_RESOURCE[obj["kind"]]
        items = self.objects[resource.plural]
        for i, old in enumerate(items):
            if _same(old, obj):
                items[i] = obj
                return
        items.append(obj)

    def apply(self, obj: dict) -> int:
        """Add or replace an object (by kind, namespace, name); returns its new resourceVersion."""
        with self.changed:
            resource = KIND_TO_RESOURCE[obj["kind"]]
            existed = any(_same(o, obj) for o in self.objects[resource.plural])
            self._store(obj)
            self.log.append((self.resource_version, "MODIFIED" if existed else "ADDED", resource.plural,
                             copy.deepcopy(self._find(resource.plural, obj))))
            self._sorted.clear()
            self.changed.notify_all()
            return self.resource_version

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        with self.changed:
            resource = KIND_TO_RESOURCE[kind]
            probe = {"kind": kind, "metadata": {"namespace": namespace, "name": name}}
            obj = self._find(resource.plural, probe)
            if obj is None:
                raise KeyError(f"{kind} {namespace}/{name}")
            self.objects[resource.plural].remove(obj)
            self.resource_version += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self.resource_version)
            self.log.append((self.resource_version, "DELETED", resource.plural, gone))
            self._sorted.clear()
            self.changed.notify_all()

    def compact(self) -> None:
        """Forget the event history: a watch from an older resourceVersion gets 410 Gone."""
        with self.changed:
            self.compacted = self.resource_version
            self.log.clear()
            self.changed.notify_all()

    def drop_watches(self) -> None:
        """End every open watch (as an API server restart or a load balancer would)."""
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def get(self, kind: str, namespace: str | None, name: str) -> dict:
        probe = {"kind": kind, "metadata": {"namespace": namespace, "name": name}}
        return copy.deepcopy(self._find(KIND_TO_RESOURCE[kind].plural, probe))

    def _find(self, plural: str, probe: dict) -> dict | None:
        return next((o for o in self.objects[plural] if _same(o, probe)), None)

    # -- serving --------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, authorization: str | None) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        selector = query.get("fieldSelector", "")
        if method == "GET" and selector.startswith("metadata.name=") and not query.get("watch"):
            code, body = super().handle(method, raw_path, authorization)
            if code == 200:
                name = selector.split("=", 1)[1]
                body["items"] = [o for o in body["items"] if o["metadata"]["name"] == name]
            return code, body
        return super().handle(method, raw_path, authorization)

    def _event_call(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        segs = path.strip("/").split("/")  # api v1 namespaces NS events [NAME]
        ns = segs[3]
        self.event_requests.append((method, path, body))
        if self.forbid_events:
            return 403, status(403, "Forbidden", 'events is forbidden: cannot create resource "events"')
        if method == "POST":
            name = body["metadata"]["name"]
            if (ns, name) in self.events:
                return 409, status(409, "AlreadyExists", f'events "{name}" already exists')
            self.events[(ns, name)] = body
            return 201, body
        if method == "PATCH" and len(segs) > 5:
            event = self.events.get((ns, segs[5]))
            if event is None:
                return 404, status(404, "NotFound", f'events "{segs[5]}" not found')
            event.update(body)
            return 200, event
        return 405, status(405, "MethodNotAllowed", f"{method} {path}")

    def _watch(self, handler, path: str, query: dict) -> None:
        m = _PATH.match(path)
        resource = RESOURCES.get(m.group("plural")) if m else None
        if resource is None:
            handler._send_json(404, status(404, "NotFound", "no such resource"))
            return
        self.watch_requests += 1
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        ns = m.group("ns")
        name = (query.get("fieldSelector") or "").partition("metadata.name=")[2] or None
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")  # this server ends a watch by closing
        handler.end_headers()
        try:
            if since and since < self.compacted:
                handler._chunk({"type": "ERROR", "object": status(
                    410, "Expired", f"too old resource version: {since} ({self.compacted})")})
                return
            sent = since
            generation = self.generation
            while not self.stopping and time.monotonic() < deadline and generation == self.generation:
                with self.changed:
                    batch = [] if self.paused else [e for e in self.log
                                                     if e[0] > sent and e[2] == resource.plural]
                    if not batch:
                        self.changed.wait(0.2)
                        continue
                for rv, kind, _plural, obj in batch:
                    sent = rv
                    if ns and obj["metadata"].get("namespace") != ns:
                        continue
                    if name and obj["metadata"]["name"] != name:
                        continue
                    handler._chunk({"type": kind, "object": obj})
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            try:
                handler.wfile.write(b"0\r\n\r\n")
                handler.wfile.flush()
            except OSError:
                pass
            handler.close_connection = True

    def start(self) -> WatchApiServer:
        server = self
        base = _handler_for(self)

        class Handler(base):  # type: ignore[misc, valid-type]
            def _send_json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, event: dict) -> None:
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}") if length else {}

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                if query.get("watch") in ("true", "1", "True"):
                    with server._lock:
                        server.requests.append(("WATCH", parts.path, query))
                    server._watch(self, parts.path, query)
                else:
                    self._answer()

            def _events(self) -> None:
                parts = urlsplit(self.path)
                code, body = server._event_call(self.command, parts.path, self._body())
                self._send_json(code, body)

            def do_POST(self) -> None:  # noqa: N802
                if "/events" in self.path:
                    self._events()
                else:
                    self._answer()

            def do_PATCH(self) -> None:  # noqa: N802
                if "/events/" in self.path:
                    self._events()
                else:
                    self._answer()

        httpd = _QuietServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="watch-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        with self.changed:
            self.changed.notify_all()
        super().stop()


def _same(a: dict, b: dict) -> bool:
    ma, mb = a["metadata"], b["metadata"]
    return (a.get("kind") == b.get("kind") and ma.get("name") == mb.get("name")
            and (ma.get("namespace") or None) == (mb.get("namespace") or None))
