"""Collect one node through the API: create the collector pod, exec the script, read the tar,
delete the pod (on success, failure and Ctrl-C). Pods left by a killed run are removed first."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.remote.pod import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    collector_pod,
    selector_for,
)
from kubectl_proxydoctor.snapshot import NodeSnapshot, snapshot_from_tar_bytes

MAX_CAPTURE_BYTES = 1024 * 1024 * 1024


def collector_script() -> str:
    """The POSIX collector shipped in the package."""
    return (resources.files("kubectl_proxydoctor") / "scripts" / "collect-node.sh").read_text()


@dataclass
class RemoteOptions:
    """How to run the collector pod."""

    image: str = DEFAULT_IMAGE
    namespace: str = DEFAULT_NAMESPACE
    # seconds for the pod to start running (PROXYDOCTOR_POD_START_TIMEOUT overrides)
    start_timeout: float = field(
        default_factory=lambda: float(os.environ.get("PROXYDOCTOR_POD_START_TIMEOUT", 120)))
    exec_timeout: float = 240.0  # seconds for the script
    deadline_seconds: int = DEFAULT_DEADLINE_SECONDS
    with_conntrack: bool = False
    poll_interval: float = 0.5
    log: Callable[[str], None] = field(default=lambda _msg: None)


def _api_error(e: Any, doing: str, host: str = "the API server") -> ProxyDoctorError:
    """One line for a failed request of the remote run; a bug (not an API/network error) re-raises."""
    from kubectl_proxydoctor.collect.api import request_failure, status_message

    if isinstance(e, ProxyDoctorError):
        return e
    code = getattr(e, "status", None)
    if code == 403:
        return ProxyDoctorError(f"forbidden: {doing} (RBAC): {status_message(e)}")
    if code:
        return ProxyDoctorError(f"{doing} failed: {status_message(e)}")
    line = request_failure(e, doing, host)
    if line is None:
        raise e
    return ProxyDoctorError(f"{line} ({doing})")


def _host(core: Any) -> str:
    try:
        return str(core.api_client.configuration.host)
    except AttributeError:
        return "the API server"


def _raw(call: Callable[..., Any], *args: Any, **kw: Any) -> dict:
    """Call a client method and return the plain JSON (no strict model validation)."""
    response = call(*args, _preload_content=False, **kw)
    return json.loads(response.data or b"{}")


def node_ready(core: Any, node: str) -> None:
    """Raise a clear error when the node does not exist or is not Ready (no pod could start)."""
    from kubernetes.client.exceptions import ApiException

    try:
        obj = _raw(core.read_node, node)
    except Exception as e:
        if isinstance(e, ApiException) and e.status == 404:
            raise ProxyDoctorError(f"node {node!r} not found in the API") from e
        raise _api_error(e, f"get nodes/{node}", _host(core)) from e
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") != "True":
            reason = f" ({cond.get('reason')}: {cond.get('message')})" if cond.get("reason") else ""
            raise ProxyDoctorError(f"node {node} is NotReady{reason}: a collector pod cannot run there; "
                                   "use `sh collect-node.sh > node.tar` on the node and --from node.tar")


def remove_leftovers(core: Any, namespace: str, node: str | None = None, log=lambda _m: None) -> list[str]:
    """Delete collector pods a killed earlier run left behind (of one node, or all)."""
    from kubernetes.client.exceptions import ApiException

    try:
        pods = _raw(core.list_namespaced_pod, namespace, label_selector=selector_for(node))
    except Exception as e:
        raise _api_error(e, f"list pods in {namespace}", _host(core)) from e
    removed = []
    for pod in pods.get("items") or []:
        name = pod["metadata"]["name"]
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, _preload_content=False)
            removed.append(name)
            log(f"removed collector pod {namespace}/{name} left by an earlier run")
        except Exception as e:
            if not (isinstance(e, ApiException) and e.status == 404):
                raise _api_error(e, f"delete pods/{name} in {namespace}", _host(core)) from e
    return removed


def wait_running(core: Any, name: str, namespace: str, timeout: float, poll: float) -> None:
    """Wait until the pod runs; a pod that fails or never starts gives a clear error."""
    deadline = time.monotonic() + timeout
    last = "Pending"
    while True:
        try:
            pod = _raw(core.read_namespaced_pod, name, namespace)
        except Exception as e:
            raise _api_error(e, f"get pods/{name} in {namespace}", _host(core)) from e
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if phase == "Running":
            return
        waiting = _waiting_reason(pod)
        last = f"{phase}{' (' + waiting + ')' if waiting else ''}"
        if phase in ("Failed", "Succeeded"):
            raise ProxyDoctorError(f"collector pod {namespace}/{name} ended ({last}) before it could run")
        if time.monotonic() >= deadline:
            raise ProxyDoctorError(f"collector pod {namespace}/{name} did not start within {timeout:.0f} s "
                                   f"(last seen: {last})")
        time.sleep(poll)


def _waiting_reason(pod: dict) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            message = waiting.get("message")
            return f"{waiting['reason']}: {message}" if message else waiting["reason"]
    return ""


def exec_script(api_client: Any, name: str, namespace: str, script: str, env: dict[str, str],
                timeout: float) -> bytes:
    """Run the script in the pod through the exec API; return its stdout (the tar)."""
    from kubernetes import client
    from kubernetes.stream import stream

    core = client.CoreV1Api(api_client)
    exports = " ".join(f"{k}={_shell_quote(v)}" for k, v in env.items())
    command = ["sh", "-c", f"export {exports}; {script}" if exports else script]
    try:
        ws = stream(core.connect_get_namespaced_pod_exec, name, namespace, command=command,
                    stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False, binary=True)
    except Exception as e:  # ApiException, websocket handshake errors
        raise _api_error(e, f"create pods/exec on {namespace}/{name}", _host(core)) from e
    out = io.BytesIO()
    err = io.BytesIO()
    deadline = time.monotonic() + timeout
    try:
        while ws.is_open():
            if time.monotonic() > deadline:
                raise ProxyDoctorError(
                    f"collector in {namespace}/{name} did not finish within {timeout:.0f} s")
            ws.update(timeout=1)
            if ws.peek_stdout():
                out.write(ws.read_stdout())
                if out.tell() > MAX_CAPTURE_BYTES:
                    raise ProxyDoctorError(f"capture from {namespace}/{name} is larger than 1 GiB; refused")
            if ws.peek_stderr():
                err.write(ws.read_stderr())
        code = ws.returncode
    finally:
        ws.close()
    if code not in (0, None):
        detail = err.getvalue().decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise ProxyDoctorError(f"collector script in {namespace}/{name} exited {code}: {detail[0]}")
    return out.getvalue()


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def collect_remote(node: str, api_client: Any, options: RemoteOptions | None = None) -> NodeSnapshot:
    """Capture ``node`` through a short-lived collector pod; the pod is always deleted."""
    from kubernetes import client

    opts = options or RemoteOptions()
    core = client.CoreV1Api(api_client)
    node_ready(core, node)
    remove_leftovers(core, opts.namespace, node, opts.log)
    manifest = collector_pod(node, image=opts.image, namespace=opts.namespace,
                             deadline_seconds=opts.deadline_seconds)
    name = manifest["metadata"]["name"]
    created = False
    try:
        # the name is chosen here, so a Ctrl-C that lands while the create request is in flight
        # (the API made the pod, the answer has not arrived) still deletes it below
        try:
            created = True
            core.create_namespaced_pod(opts.namespace, manifest, _preload_content=False)
        except Exception as e:
            created = False
            raise _api_error(e, f"create pods in {opts.namespace}", _host(core)) from e
        opts.log(f"started collector pod {opts.namespace}/{name} on {node}")
        wait_running(core, name, opts.namespace, opts.start_timeout, opts.poll_interval)
        # the pod has no host PID namespace and no /var/log: kube-proxy's process and log come from the API
        env = {"NODE_NAME": node, "COLLECT_HOST_PROCESSES": "0", "COLLECT_HOST_LOGS": "0"}
        if opts.with_conntrack:
            env["COLLECT_CONNTRACK"] = "1"
        data = exec_script(api_client, name, opts.namespace, collector_script(), env, opts.exec_timeout)
        snapshot = snapshot_from_tar_bytes(data, origin=f"node/{node}")
        snapshot.meta.setdefault("node", node)
        kube_proxy_from_api(core, node, snapshot)
        return snapshot
    finally:
        if created:
            _delete_pod(_fresh_core(api_client, core), name, opts)


KUBE_PROXY_SELECTOR = "k8s-app=kube-proxy"


def kube_proxy_from_api(core: Any, node: str, snapshot: NodeSnapshot, namespace: str = "kube-system") -> None:
    """kube-proxy-cmdline.txt and kube-proxy.log from the kube-proxy pod on ``node`` (its running
    container's command and args; the tail of its log), as collect-node.sh writes them on a node.
    What cannot be read is recorded in the snapshot's sources, never raised."""
    from kubectl_proxydoctor.kube_proxy_process import FILENAME, LOG_FILENAME, MAX_LOG_BYTES, tail_bytes

    what = f"list pods in {namespace} ({KUBE_PROXY_SELECTOR}) on {node}"
    try:
        listed = _raw(core.list_namespaced_pod, namespace, label_selector=KUBE_PROXY_SELECTOR,
                      field_selector=f"spec.nodeName={node}")
    except Exception as e:
        why = f"unavailable: {_api_error(e, what, _host(core))}"
        snapshot.sources[FILENAME] = snapshot.sources[LOG_FILENAME] = why
        return
    pods = [p for p in listed.get("items") or [] if (p.get("spec") or {}).get("nodeName") == node]
    if not pods:
        why = (f"unavailable: no pod labelled {KUBE_PROXY_SELECTOR} on node {node} in {namespace} "
               "(kube-proxy may run outside a pod there)")
        snapshot.sources[FILENAME] = snapshot.sources[LOG_FILENAME] = why
        return
    pod = pods[0]
    name = pod["metadata"]["name"]
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    container = next((c for c in containers if c.get("name") == "kube-proxy"), containers[0])
    cname = container.get("name") or "kube-proxy"
    status: dict = next((c for c in (pod.get("status") or {}).get("containerStatuses") or []
                   if c.get("name") == cname), {})
    state = status.get("state") or {}
    where = f"from the API: pod {namespace}/{name}"
    if "running" in state:
        args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        snapshot.files[FILENAME] = " ".join(args or ["kube-proxy"]) + "\n"
        snapshot.sources[FILENAME] = f"ok ({where}, container {cname} running)"
    else:
        detail = next(iter(state), "unknown")
        reason = (state.get(detail) or {}).get("reason") if isinstance(state.get(detail), dict) else None
        snapshot.files[FILENAME] = ""
        because = f" ({reason})" if reason else ""
        snapshot.sources[FILENAME] = f"ok ({where}: container {cname} {detail}{because})"
    try:
        response = core.read_namespaced_pod_log(name, namespace, container=cname, tail_lines=5000,
                                                _preload_content=False)
        data = tail_bytes(response.data or b"", MAX_LOG_BYTES)
    except Exception as e:
        failure = _api_error(e, f"get pods/{name}/log in {namespace}", _host(core))
        snapshot.sources[LOG_FILENAME] = f"unavailable: {failure}"
        return
    snapshot.files[LOG_FILENAME] = data.decode("utf-8", "replace")
    snapshot.sources[LOG_FILENAME] = f"ok ({where}, last {MAX_LOG_BYTES // 1024} KiB at most)"


DELETE_TIMEOUT = 10.0  # seconds for the collector pod's delete request


def _fresh_core(api_client: Any, core: Any) -> Any:
    """A CoreV1Api on a new connection pool for the cleanup: a Ctrl-C that lands inside a request
    can leave the old pool's lock held, and the delete would then wait for it forever."""
    try:
        from kubernetes import client

        return client.CoreV1Api(client.ApiClient(api_client.configuration))
    except Exception:  # not a kubernetes ApiClient (a stand-in): use what there is
        return core


def _delete_pod(core: Any, name: str, opts: RemoteOptions) -> None:
    """Delete the collector pod; a failure is logged (the next run removes what is left)."""
    from kubernetes.client.exceptions import ApiException

    try:
        # bounded: a Ctrl-C'd run must end even when the API does not answer (the next run cleans up)
        core.delete_namespaced_pod(name, opts.namespace, grace_period_seconds=0, _preload_content=False,
                                   _request_timeout=DELETE_TIMEOUT)
        opts.log(f"deleted collector pod {opts.namespace}/{name}")
    except ApiException as e:
        if e.status != 404:
            opts.log(f"could not delete collector pod {opts.namespace}/{name}: {e.reason}; "
                     "the next run removes it")
    except Exception as e:  # connection gone while cleaning up: the next run removes it
        opts.log(f"could not delete collector pod {opts.namespace}/{name}: {e}")

