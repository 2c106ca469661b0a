"""The API view kept current by list+watch (Services, EndpointSlices, this Node), like kube-proxy's
informers: list (paged) for a resourceVersion, watch from it, re-watch from the last version seen when
a watch ends, list again when the server says the version is too old (410 Gone), back off on errors.

Every change is applied to an in-memory store, given a sequence number, and reported to
``on_change(key, seq, what)`` (key: the service ``ns/name`` it affects, or ``latency.NODE_KEY``).
kube-proxy's ConfigMap/DaemonSet are read with the project's ``ApiReader`` at start and every
``config_refresh`` seconds. A resource that was never listed, or whose watch has been failing for
longer than ``stale_after`` seconds, makes its ``ClusterState.sources`` entry an error, so the
analysis reports the verdict as unknown instead of comparing with a stale view.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.serve.latency import NODE_KEY

LABEL_SERVICE_NAME = "kubernetes.io/service-name"


@dataclass
class ResourceSpec:
    """One watched resource."""

    attr: str  # ClusterState attribute
    kind: str
    api_version: str
    rbac: str  # as RBAC names it, for messages
    list_fn: Callable
    field_selector: str | None = None


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class ResourceWatch:
    """The list+watch loop of one resource, on its own thread."""

    def __init__(self, owner: WatchedApi, spec: ResourceSpec) -> None:
        self.owner = owner
        self.spec = spec
        self.store: dict[tuple[str, str], dict] = {}
        self.synced = False
        self.failing_since: float | None = None
        self.error: str | None = "not listed yet"
        self.resource_version: str | None = None
        self.relists = 0
        self.watches = 0
        self.first_attempt = threading.Event()

    # -- requests -------------------------------------------------------------------------------

    def _kw(self) -> dict:
        return {"field_selector": self.spec.field_selector} if self.spec.field_selector else {}

    def list(self) -> None:
        """List every object (paged), replace the store, report what changed."""
        reader = self.owner.reader
        items: list[dict] = []
        token = None
        while True:
            kw = {**self._kw(), "limit": 500}
            if token:
                kw["_continue"] = token
            body = reader._call(self.spec.list_fn, kw)
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        fresh = {}
        for item in items:
            _slim(item)
            item.setdefault("kind", self.spec.kind)
            item.setdefault("apiVersion", self.spec.api_version)
            fresh[_key(item)] = item
        self.relists += 1
        self.owner.replace(self, fresh)
        self.resource_version = meta.get("resourceVersion")

    def watch_once(self, stop: threading.Event) -> str:
        """Watch from the last resourceVersion until the server ends the watch: "again" to watch
        again from where it ended, "relist" when the version is gone (410)."""
        # spread reconnects over the nodes, like client-go's informers
        timeout = self.owner.watch_timeout + random.randint(0, min(30, self.owner.watch_timeout // 8))
        kw = {**self._kw(), "watch": True, "resource_version": self.resource_version,
              "allow_watch_bookmarks": True, "timeout_seconds": timeout,
              "_preload_content": False, "_request_timeout": (5, timeout + 30)}
        self.watches += 1
        resp = self.spec.list_fn(**kw)
        self.owner.sock_of[self.spec.attr] = resp
        try:
            buf = b""
            for chunk in resp.stream(65536, decode_content=True):
                if stop.is_set():
                    return "stop"
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        outcome = self._event(json.loads(line))
                        if outcome:
                            return outcome
            if buf.strip():
                return self._event(json.loads(buf)) or "again"
            return "again"
        finally:
            resp.close()  # the server ends a watch by closing: never reuse that connection
            resp.release_conn()

    def _event(self, event: dict) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                return "relist"
            raise WatchError(f"watch error: {obj.get('message') or obj}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return None
        _slim(obj)
        obj.setdefault("kind", self.spec.kind)
        obj.setdefault("apiVersion", self.spec.api_version)
        self.owner.apply(self, kind or "", obj)
        self.resource_version = rv or self.resource_version
        return None

    # -- loop -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        delay = 0.5
        need_list = True
        while not stop.is_set():
            try:
                if need_list:
                    self.list()
                    need_list = False
                    self._ok()
                outcome = self.watch_once(stop)
                self._ok()
                delay = 0.5
                if outcome == "relist":
                    self.owner.log(f"watch {self.spec.rbac}: resourceVersion {self.resource_version} is too "
                                   "old (410 Gone): listing again")
                    need_list = True
                continue
            except WatchError as e:
                self._failed(str(e))
                need_list = True
            except Exception as e:  # noqa: BLE001 - classified into one line; the loop must go on
                if getattr(e, "status", None) == 410:
                    need_list = True
                    continue
                if stop.is_set():
                    return
                self._failed(self._describe(e))
                need_list = need_list or getattr(e, "status", None) is not None
            stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _describe(self, e: Exception) -> str:
        try:
            return self.owner.reader._failure(e, f"watch {self.spec.rbac}")
        except Exception:  # noqa: BLE001
            return f"error: watch {self.spec.rbac}: {type(e).__name__}: {e}"
        finally:
            self.owner.reader.unreachable = None  # ApiReader stops after one network error; we retry

    def _ok(self) -> None:
        if self.error is not None and self.synced and self.failing_since is not None:
            self.owner.log(f"watch {self.spec.rbac}: working again")
        self.synced = True
        self.error = None
        self.failing_since = None
        self.first_attempt.set()

    def _failed(self, error: str) -> None:
        if self.error != error:
            self.owner.log(f"watch {self.spec.rbac}: {error}")
        self.error = error
        if self.failing_since is None:
            self.failing_since = self.owner.clock()
        self.owner.errors += 1
        if self.owner.on_error:
            self.owner.on_error("api")
        self.first_attempt.set()

    def source(self) -> str:
        """This resource's ``ClusterState.sources`` entry."""
        if not self.synced:
            return self.error or "error: not listed yet"
        if self.failing_since is not None:
            age = self.owner.clock() - self.failing_since
            if age > self.owner.stale_after:
                return f"error: watch failing for {age:.0f} s ({self.error}); the cached view is stale"
            return f"ok (cached; watch reconnecting: {self.error})"
        return "ok"


class WatchError(Exception):
    pass


class WatchedApi:
    """Services, EndpointSlices and this Node, kept current by list+watch (see module doc)."""

    def __init__(self, kubeconfig: str | None, context: str | None, node_name: str | None, *,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 watch_timeout: int = 240, stale_after: float = 120.0, config_refresh: float = 300.0) -> None:
        from kubernetes import client

        from kubectl_proxydoctor.collect.api import ApiReader, load_client

        self.target = load_client(kubeconfig, context)
        self.client = self.target.client
        self.reader = ApiReader(self.target, timeout=10.0)
        self.node_name = node_name or socket.gethostname()
        self.log = log or (lambda _line: None)
        self.clock = clock
        self.watch_timeout = watch_timeout
        self.stale_after = stale_after
        self.config_refresh = config_refresh
        self.on_change: Callable[[str, int, str], None] | None = None
        self.on_error: Callable[[str], None] | None = None
        self.seq = 0
        self.errors = 0
        self.sock_of: dict[str, object] = {}
        self._lock = threading.Lock()
        self._config: ClusterState | None = None
        self._config_at = float("-inf")
        core, discovery = client.CoreV1Api(self.client), client.DiscoveryV1Api(self.client)
        self.watches = [ResourceWatch(self, spec) for spec in (
            ResourceSpec("services", "Service", "v1", "services", core.list_service_for_all_namespaces),
            ResourceSpec("endpointslices", "EndpointSlice", "discovery.k8s.io/v1",
                         "endpointslices.discovery.k8s.io", discovery.list_endpoint_slice_for_all_namespaces),
            ResourceSpec("nodes", "Node", "v1", "nodes", core.list_node,
                         field_selector=f"metadata.name={self.node_name}"),
        )]
        self._threads: list[threading.Thread] = []

    # -- store updates (watch threads) ------------------------------------------------------------

    def _affects(self, spec: ResourceSpec, old: dict | None, new: dict | None) -> str | None:
        obj = new or old or {}
        ns, name = _key(obj)
        if spec.attr == "services":
            return f"{ns}/{name}"
        if spec.attr == "endpointslices":
            svc = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_SERVICE_NAME)
            return f"{ns}/{svc}" if svc else None
        # the Node: only what kube-proxy acts on (labels: topology zone), not status heartbeats
        labels = [((o or {}).get("metadata") or {}).get("labels") for o in (old, new)]
        return NODE_KEY if old is None or new is None or labels[0] != labels[1] else None

    def _notify(self, spec: ResourceSpec, kind: str, old: dict | None, new: dict | None) -> None:
        key = self._affects(spec, old, new)
        self.seq += 1
        if key is not None and self.on_change is not None:
            ns, name = _key(new or old or {})
            self.on_change(key, self.seq, f"{kind} {spec.kind} {ns + '/' if ns else ''}{name}")

    def apply(self, watch: ResourceWatch, kind: str, obj: dict) -> None:
        with self._lock:
            key = _key(obj)
            old = watch.store.get(key)
            if kind == "DELETED":
                watch.store.pop(key, None)
                self._notify(watch.spec, kind, old, None)
            else:
                watch.store[key] = obj
                self._notify(watch.spec, kind, old, obj)

    def replace(self, watch: ResourceWatch, fresh: dict[tuple[str, str], dict]) -> None:
        """A (re)list: report what differs from the store before it."""
        with self._lock:
            old_store, watch.store = watch.store, fresh
            if not watch.synced and not old_store:
                self.seq += 1  # the first list: no change to time
                return
            for key in old_store.keys() | fresh.keys():
                old, new = old_store.get(key), fresh.get(key)
                if old is None or new is None or (old.get("metadata") or {}).get("resourceVersion") != (
                        (new.get("metadata") or {}).get("resourceVersion")):
                    self._notify(watch.spec, "ADDED" if old is None else "DELETED" if new is None
                                 else "MODIFIED", old, new)

    # -- the engine's view ------------------------------------------------------------------------

    def current(self) -> tuple[ClusterState, int]:
        if self.clock() - self._config_at >= self.config_refresh:
            self._refresh_config()
        with self._lock:
            state = ClusterState(origin="live")
            for w in self.watches:
                getattr(state, w.spec.attr).extend(w.store.values())
                state.sources[f"list {w.spec.attr}"] = w.source()
            if self._config is not None:
                state.configmaps = list(self._config.configmaps)
                state.daemonsets = list(self._config.daemonsets)
                state.sources.update(self._config.sources)
            return state, self.seq

    def _refresh_config(self) -> None:
        """kube-proxy's (and Cilium's) ConfigMap and DaemonSet, read like `check` reads them."""
        from kubectl_proxydoctor.collect.api import _CONFIGMAPS, KUBE_SYSTEM, OPTIONAL_OBJECTS

        state = ClusterState(origin="live")
        self.reader.unreachable = None
        for resource, name in OPTIONAL_OBJECTS:
            fn = self.reader.core.read_namespaced_config_map if resource is _CONFIGMAPS \
                else self.reader.apps.read_namespaced_daemon_set
            self.reader._get_into(state, resource, fn, {"name": name, "namespace": KUBE_SYSTEM},
                                  f"{resource[1]}/{KUBE_SYSTEM}/{name}")
        self.reader._get_referenced_config(state)
        self.reader.unreachable = None
        self._config, self._config_at = state, self.clock()

    def uid_of(self, kind: str, namespace: str, name: str) -> str | None:
        """The uid of a watched Service or Node (for an Event's involvedObject)."""
        attr = {"Service": "services", "Node": "nodes"}.get(kind)
        for w in self.watches:
            if w.spec.attr == attr:
                obj = w.store.get((namespace, name))
                return ((obj or {}).get("metadata") or {}).get("uid")
        return None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, stop: threading.Event, wait: float = 30.0) -> None:
        """Start the watches; return once each resource was listed or failed once (or ``wait`` s)."""
        for w in self.watches:
            t = threading.Thread(target=w.run, args=(stop,), name=f"watch-{w.spec.attr}", daemon=True)
            t.start()
            self._threads.append(t)
        deadline = self.clock() + wait
        for w in self.watches:
            w.first_attempt.wait(max(0.0, deadline - self.clock()))

    def stop(self) -> None:
        for resp in list(self.sock_of.values()):
            for method in ("shutdown", "close"):  # shutdown() interrupts a read blocked in a thread
                try:
                    getattr(resp, method)()
                except Exception:  # noqa: BLE001 - already closed, or an older urllib3
                    pass
        for t in self._threads:
            t.join(timeout=2)
        self.client.close()


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _slim(obj: dict) -> None:
    """Drop what no check reads and what makes a cached object several times its size: the field
    managers and kubectl's copy of the last applied object (other annotations stay: topology hints)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
