"""Read the API state a node's proxy rules should follow, with the real ``kubernetes`` client.

Services and EndpointSlices (all namespaces or one), the Node, kube-proxy's ConfigMap and
DaemonSet, and Cilium's DaemonSet and ConfigMap, as the plain JSON dicts the API server sent (the
response bodies are decoded directly, so no field is lost to an older client model). Lists are
paged with ``limit``/``continue`` like kubectl. A forbidden or unreachable request never raises: it
is recorded in ``ClusterState.sources`` ("forbidden: list endpointslices.discovery.k8s.io in all
namespaces (RBAC)", "unreachable: https://...: connection refused") so callers can fall back to
node-only checks. A kubeconfig that cannot be loaded raises ProxyDoctorError.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ProxyDoctorError

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_KUBECONFIG = "~/.kube/config"
KUBE_SYSTEM = "kube-system"

# (resource as RBAC names it, ClusterState attribute, kind, apiVersion)
_SERVICES = ("services", "services", "Service", "v1")
_SLICES = ("endpointslices.discovery.k8s.io", "endpointslices", "EndpointSlice", "discovery.k8s.io/v1")
_NODES = ("nodes", "nodes", "Node", "v1")
_CONFIGMAPS = ("configmaps", "configmaps", "ConfigMap", "v1")
_DAEMONSETS = ("daemonsets.apps", "daemonsets", "DaemonSet", "apps/v1")
_SERVICECIDRS = ("servicecidrs.networking.k8s.io", "servicecidrs", "ServiceCIDR", "networking.k8s.io/v1")

# optional objects in kube-system: (resource, name)
OPTIONAL_OBJECTS = (
    (_CONFIGMAPS, "kube-proxy"),
    (_DAEMONSETS, "kube-proxy"),
    (_DAEMONSETS, "cilium"),
    (_CONFIGMAPS, "cilium-config"),
)


@dataclass
class ApiTarget:
    """Which API server and credentials were chosen, and how (for messages)."""

    client: Any  # kubernetes.client.ApiClient
    host: str
    how: str  # "kubeconfig /path (context x)" | "in-cluster"


def load_client(
    kubeconfig: str | os.PathLike | None = None,
    context: str | None = None,
    *,
    serviceaccount_dir: str = SERVICEACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> ApiTarget:
    """Pick credentials like kubectl: --kubeconfig, else $KUBECONFIG (colon-separated, merged),
    else ~/.kube/config, else the pod's service account (in-cluster). Raises ProxyDoctorError."""
    from kubernetes import client
    from kubernetes.config.config_exception import ConfigException

    env = os.environ if environ is None else environ
    kubeconfig = os.fspath(kubeconfig) if kubeconfig is not None else None  # str or Path
    cfg = client.Configuration()
    path = kubeconfig or env.get("KUBECONFIG") or None
    if path is None and Path(os.path.expanduser(DEFAULT_KUBECONFIG)).exists():
        path = DEFAULT_KUBECONFIG
    try:
        if path is not None:
            how = _load_kubeconfig(cfg, path, context, explicit=kubeconfig is not None)
        elif env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT"):
            if context:
                raise ProxyDoctorError(f"--context {context}: no kubeconfig found (only in-cluster config)")
            _load_incluster(cfg, serviceaccount_dir, env)
            how = "in-cluster service account"
        else:
            raise ProxyDoctorError(
                "no Kubernetes credentials: no --kubeconfig, no KUBECONFIG, no ~/.kube/config, and not in a "
                "pod (KUBERNETES_SERVICE_HOST unset); use --from PATH for offline analysis")
    except ProxyDoctorError:
        raise
    except (ConfigException, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        where = f"kubeconfig {path}" if path is not None else "in-cluster config"
        raise ProxyDoctorError(f"cannot load {where}: {_one_line(e)}") from e
    except Exception as e:  # yaml.YAMLError and friends from a corrupt file
        if type(e).__module__.startswith("yaml"):
            raise ProxyDoctorError(f"cannot load kubeconfig {path}: not valid YAML ({_one_line(e)})") from e
        raise
    _check_server(cfg.host, path)
    cfg.retries = 0  # one attempt per request: an unreachable server must fail fast
    return ApiTarget(client=client.ApiClient(configuration=cfg), host=cfg.host, how=how)


def _load_kubeconfig(cfg: Any, path: str, context: str | None, *, explicit: bool) -> str:
    from kubernetes.config import kube_config

    files = [os.path.expanduser(p) for p in path.split(os.pathsep) if p]
    existing = [p for p in files if os.path.exists(p)]
    if not existing:
        source = "--kubeconfig" if explicit else "KUBECONFIG"
        raise ProxyDoctorError(f"{source} {path}: no such file")
    for name in existing:
        _check_kubeconfig_shape(name)
    merged = kube_config.KubeConfigMerger(os.pathsep.join(existing)).config
    if merged is None:
        raise ProxyDoctorError(f"cannot load kubeconfig {path}: no configuration found")
    if context is None:
        # like kubectl, the first file that sets current-context wins (the client takes the last)
        context = _first_current_context(existing)
        if not context:
            raise ProxyDoctorError(f"kubeconfig {path}: no current-context; use --context")
    names = [c.value.get("name") for c in (merged.safe_get("contexts") or [])]
    if context not in names:
        raise ProxyDoctorError(f"context {context!r} not found in kubeconfig {path} "
                               f"(contexts: {', '.join(str(n) for n in names) or 'none'})")
    kube_config.load_kube_config(config_file=os.pathsep.join(existing), context=context,
                                 client_configuration=cfg, persist_config=False)
    return f"kubeconfig {path} (context {context})"


def _check_kubeconfig_shape(name: str) -> None:
    """A kubeconfig is a YAML mapping whose clusters/contexts/users are lists of mappings; anything
    else is refused with one line before the client trips over it."""
    import yaml

    try:
        doc = yaml.safe_load(Path(name).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ProxyDoctorError(f"cannot read kubeconfig {name}: {_one_line(e)}") from e
    except yaml.YAMLError as e:
        raise ProxyDoctorError(f"cannot load kubeconfig {name}: not valid YAML ({_one_line(e)})") from e
    if doc is None:
        return  # an empty file: the client says "no configuration found"
    if not isinstance(doc, dict):
        raise ProxyDoctorError(f"cannot load kubeconfig {name}: not a kubeconfig (expected a YAML mapping "
                               f"with clusters, contexts and users; found {type(doc).__name__})")
    for key in ("clusters", "contexts", "users"):
        items = doc.get(key)
        if items is not None and not (isinstance(items, list) and all(isinstance(i, dict) for i in items)):
            raise ProxyDoctorError(f"cannot load kubeconfig {name}: '{key}' must be a list of entries")


def _check_server(host: str, path: str | None) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(host or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        where = f"kubeconfig {path}" if path else "in-cluster config"
        raise ProxyDoctorError(f"{where}: server {host!r} is not an http(s) URL")


def _first_current_context(files: list[str]) -> str | None:
    import yaml

    for name in files:
        doc = yaml.safe_load(Path(name).read_text())
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


def _load_incluster(cfg: Any, serviceaccount_dir: str, env: Mapping[str, str]) -> None:
    from kubernetes.config.incluster_config import InClusterConfigLoader

    loader = InClusterConfigLoader(
        token_filename=os.path.join(serviceaccount_dir, "token"),
        cert_filename=os.path.join(serviceaccount_dir, "ca.crt"),
        environ=env,
    )
    loader.load_and_set(cfg)


def read_cluster(
    kubeconfig: str | os.PathLike | None = None,
    context: str | None = None,
    namespace: str | None = None,
    node_name: str | None = None,
    page_size: int = 500,
    *,
    timeout: float = 10.0,
    serviceaccount_dir: str = SERVICEACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> ClusterState:
    """Read Services, EndpointSlices (all namespaces, or ``namespace``), the Node ``node_name`` and
    kube-proxy's / Cilium's objects in kube-system. Forbidden and unreachable requests are recorded
    in ``sources``, never raised; only unusable credentials raise ProxyDoctorError."""
    target = load_client(kubeconfig, context, serviceaccount_dir=serviceaccount_dir, environ=environ)
    try:
        return ApiReader(target, timeout=timeout, page_size=page_size).read(namespace, node_name)
    finally:
        target.client.close()


class ApiReader:
    """Runs the requests of one read, turning each failure into a ``sources`` entry."""

    def __init__(self, target: ApiTarget, *, timeout: float = 10.0, page_size: int = 500) -> None:
        from kubernetes import client

        self.target = target
        self.timeout = (min(timeout, 5.0), timeout)
        self.page_size = page_size
        self.core = client.CoreV1Api(target.client)
        self.discovery = client.DiscoveryV1Api(target.client)
        self.apps = client.AppsV1Api(target.client)
        self.unreachable: str | None = None  # set by the first network failure; later requests skip
        self.requests = 0

    def read(self, namespace: str | None, node_name: str | None) -> ClusterState:
        state = ClusterState(origin="live")
        scope = f"in namespace {namespace}" if namespace else "in all namespaces"
        lists: tuple[tuple[tuple[str, str, str, str], Callable[..., Any], dict[str, str]], ...]
        if namespace:
            lists = (
                (_SERVICES, self.core.list_namespaced_service, {"namespace": namespace}),
                (_SLICES, self.discovery.list_namespaced_endpoint_slice, {"namespace": namespace}),
            )
        else:
            lists = (
                (_SERVICES, self.core.list_service_for_all_namespaces, {}),
                (_SLICES, self.discovery.list_endpoint_slice_for_all_namespaces, {}),
            )
        fn: Callable[..., Any]
        for resource, fn, kw in lists:
            key = f"list {resource[1]}"
            items, state.sources[key] = self._list(fn, kw, f"list {resource[0]} {scope}")
            getattr(state, resource[1]).extend(_typed(i, resource) for i in items)
        if node_name:
            self._get_into(state, _NODES, self.core.read_node, {"name": node_name}, f"nodes/{node_name}")
        for resource, name in OPTIONAL_OBJECTS:
            read: Callable[..., Any] = self.core.read_namespaced_config_map if resource is _CONFIGMAPS \
                else self.apps.read_namespaced_daemon_set
            self._get_into(state, resource, read, {"name": name, "namespace": KUBE_SYSTEM},
                           f"{resource[1]}/{KUBE_SYSTEM}/{name}")
        self._get_referenced_config(state)
        self._service_cidrs(state)
        return state

    def _service_cidrs(self, state: ClusterState) -> None:
        """ServiceCIDRs (networking.k8s.io/v1, GA in 1.33): not served (older API) leaves them unknown
        without a failure; other failures are said in ``sources``."""
        if self.unreachable:
            return
        from kubernetes import client

        fn = client.NetworkingV1Api(self.target.client).list_service_cidr
        try:
            body = self._call(fn, {})
        except Exception as e:
            if getattr(e, "status", None) == 404:
                return  # the API server does not serve networking.k8s.io/v1 servicecidrs
            state.sources["list servicecidrs"] = self._failure(e, f"list {_SERVICECIDRS[0]}")
            return
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            state.sources["list servicecidrs"] = (
                f"error: list {_SERVICECIDRS[0]}: the API server sent something that is not a list")
            return
        state.servicecidrs = [_typed(i, _SERVICECIDRS) for i in body["items"] if isinstance(i, dict)]
        state.servicecidrs_read = True
        state.sources["list servicecidrs"] = "ok"

    def list_nodes(self, selector: str | None = None) -> tuple[list[dict], str]:
        """Every Node (matching the label ``selector``), paged, and "ok" or why it failed."""
        kw = {"label_selector": selector} if selector else {}
        what = f"list nodes (selector {selector})" if selector else "list nodes"
        items, status = self._list(self.core.list_node, kw, what)
        return [_typed(i, _NODES) for i in items], status

    def _get_referenced_config(self, state: ClusterState) -> None:
        """The ConfigMap kube-proxy's DaemonSet really mounts at --config, when not "kube-proxy"."""
        from kubectl_proxydoctor.kubeproxy_config import referenced_configmap

        for ds in state.daemonsets:
            if ds["metadata"].get("name") != "kube-proxy":
                continue
            ref = referenced_configmap(ds)
            have = {c["metadata"].get("name") for c in state.configmaps}
            if ref is not None and ref[0] not in have:
                self._get_into(state, _CONFIGMAPS, self.core.read_namespaced_config_map,
                               {"name": ref[0], "namespace": KUBE_SYSTEM},
                               f"configmaps/{KUBE_SYSTEM}/{ref[0]}")

    # -- requests -----------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], kw: dict) -> dict:
        import warnings

        self.requests += 1
        with warnings.catch_warnings():
            if not self.target.client.configuration.verify_ssl:
                # insecure-skip-tls-verify is set in the kubeconfig: no warning per request (as kubectl)
                from urllib3.exceptions import InsecureRequestWarning

                warnings.simplefilter("ignore", InsecureRequestWarning)
            response = fn(**kw, _preload_content=False, _request_timeout=self.timeout)
        try:
            data = response.data
        finally:
            response.release_conn()
        return json.loads(data)

    def _list(self, fn: Callable[..., Any], kw: dict, what: str) -> tuple[list[dict], str]:
        """Every item of a paged list, and "ok" or why it failed."""
        if self.unreachable:
            return [], self.unreachable
        items: list[dict] = []
        token: str | None = None
        paged = bool(self.page_size and self.page_size > 0)
        while True:
            args = dict(kw)
            if paged:
                args["limit"] = self.page_size
                if token:
                    args["_continue"] = token
            try:
                body = self._call(fn, args)
            except Exception as e:  # classified below; unknown errors re-raise
                if token and getattr(e, "status", None) == 410:
                    # continue token expired mid-list: like client-go's pager, list once unpaged
                    items, token, paged = [], None, False
                    continue
                return [], self._failure(e, what)  # never half a list: it would look like drift
            if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
                return [], f"error: {what}: the API server sent something that is not a list"
            items.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue") or None
            if not paged or not token:
                return items, "ok"

    def _get_into(self, state: ClusterState, resource: tuple, fn: Callable[..., Any], kw: dict,
                  label: str) -> None:
        key = f"get {label}"
        if self.unreachable:
            state.sources[key] = self.unreachable
            return
        name = label.split("/", 1)[1]
        try:
            obj = self._call(fn, kw)
        except Exception as e:
            if getattr(e, "status", None) == 404:
                state.sources[key] = "ok (not found)"
                return
            state.sources[key] = self._failure(e, f"get {resource[0]} {name}")
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            state.sources[key] = f"error: get {resource[0]} {name}: the API server sent no object"
            return
        getattr(state, resource[1]).append(_typed(obj, resource))
        state.sources[key] = "ok"

    def _failure(self, e: Exception, what: str) -> str:
        """One line for a failed request; re-raises anything that is not an API or network error."""
        line = request_failure(e, what, self.target.host, self.timeout[1])
        if line is None:
            raise e
        if line.startswith("unreachable:"):
            self.unreachable = line
        return line


def request_failure(e: BaseException, what: str, host: str, timeout: float = 10.0) -> str | None:
    """One line for a failed API request ("forbidden: ...", "unreachable: HOST: connection refused"),
    or None when ``e`` is not an API, network or answer error (a bug: let it raise)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(e, ApiException) and e.status:
        if e.status == 403:
            return f"forbidden: {what} (RBAC)"
        if e.status == 401:
            return f"unauthorized: {what}: the API server rejected the credentials"
        if e.status == 404:
            return f"not found: {what}: the API server does not serve this resource"
        return f"error: {what}: HTTP {e.status} {status_message(e)}"
    if isinstance(e, HTTPError | OSError | ApiException) or type(e).__module__.startswith("websocket"):
        return f"unreachable: {host}: {_network_reason(e, timeout)}"
    if isinstance(e, ValueError):  # a body that is not JSON
        return f"error: {what}: the API server sent an unreadable answer ({_one_line(e)})"
    return None


def _typed(obj: dict, resource: tuple) -> dict:
    """List items come without kind/apiVersion; put them back first, as kubectl prints them."""
    if obj.get("kind") and obj.get("apiVersion"):
        return obj
    return {"apiVersion": resource[3], "kind": resource[2], **obj}


def status_message(e: Any) -> str:
    """The API server's own message in a failed request's Status body (else the HTTP reason)."""
    try:
        body = json.loads(e.body)
        return str(body.get("message") or e.reason)
    except (TypeError, ValueError, AttributeError):
        return str(e.reason or "")


def _network_reason(e: BaseException, timeout: float) -> str:
    """connection refused / timed out / cannot resolve / TLS error, from a urllib3 error chain."""
    from urllib3.exceptions import SSLError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = getattr(cur, "reason", None) or cur.__cause__ or cur.__context__
        if cur is not None and not isinstance(cur, BaseException):
            break
    text = " ".join(str(x) for x in seen)
    if any(isinstance(x, ConnectionRefusedError) for x in seen) or "Connection refused" in text:
        return "connection refused"
    if any(isinstance(x, Urllib3Timeout | TimeoutError) for x in seen) or "timed out" in text.lower():
        return f"timed out after {timeout:g}s"
    if "Name or service not known" in text or "nodename nor servname" in text or "resolve" in text.lower():
        return "cannot resolve the host name"
    if any(isinstance(x, SSLError) for x in seen) or "CERTIFICATE" in text or "SSL" in text:
        return f"TLS error: {_one_line(seen[-1])}"
    return _one_line(seen[-1])


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
