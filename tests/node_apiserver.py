"""The test API server, plus what remote collection needs: Pods (create, get, list by label,
delete) and the exec API over a real WebSocket (v4.channel.k8s.io), whose command runs for real
inside the network namespace that stands for the pod's node.

    server = NodeApiServer.from_api_json(api_json)
    server.add_node("pdnode1", netns="pd-rem-1234")     # a Ready node backed by a netns
    server.pod_behaviour["pdnode2"] = "never-starts"     # pods there stay Pending
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.apiserver import FakeApiServer, _handler_for, status

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class NodeApiServer(FakeApiServer):
    """FakeApiServer that also runs collector pods on namespaces standing in for nodes."""

    def __init__(self, objects: list[dict], **kw) -> None:
        super().__init__(objects, **kw)
        self.node_netns: dict[str, str] = {}
        self.pod_behaviour: dict[str, str] = {}  # node -> "starts" | "never-starts" | "fails"
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.execs: list[list[str]] = []
        self.exec_delay = 0.0  # seconds before the command runs (for Ctrl-C tests)
        self._request = threading.local()  # the body of the POST this handler thread serves
        self.pod_logs: dict[str, str] = {}  # pod name -> its container log (pods/NAME/log)

    def add_node(self, name: str, netns: str | None = None, ready: bool = True,
                 labels: dict[str, str] | None = None) -> None:
        condition = {"type": "Ready", "status": "True" if ready else "False",
                     "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                     "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting"}
        self.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
                  "status": {"conditions": [condition], "nodeInfo": {"kernelVersion": "6.1.0"},
                             "addresses": [{"type": "InternalIP", "address": "172.30.0.1"}]}})
        if netns:
            self.node_netns[name] = netns

    # -- pods ---------------------------------------------------------------------------------

    def pods(self) -> list[dict]:
        return list(self.objects["pods"])

    def handle(self, method: str, raw_path: str, authorization: str | None) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        segs = parts.path.strip("/").split("/")
        if len(segs) >= 5 and segs[:3] == ["api", "v1", "namespaces"] and segs[4] == "pods":
            with self._lock:
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                self.requests.append((method, parts.path, query))
            ns = segs[3]
            name = segs[5] if len(segs) > 5 else None
            if ("create", "pods", None) in self.forbidden and method == "POST":
                return 403, status(403, "Forbidden", f'pods is forbidden: cannot create resource "pods" in '
                                   f'API group "" in the namespace "{ns}"', {"kind": "pods"})
            if method == "POST" and name is None:
                return self._create_pod(ns, getattr(self._request, "body", {}))
            if method == "DELETE" and name:
                return self._delete_pod(ns, name)
            if method == "GET" and name:
                return self._get_pod(ns, name)
            if method == "GET":
                selector = parse_qs(parts.query).get("labelSelector", [""])[-1]
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                             "items": [p for p in self.pods() if p["metadata"]["namespace"] == ns
                                       and _selects(selector, p["metadata"].get("labels", {}))]}
        selector = parse_qs(parts.query).get("labelSelector", [""])[-1]
        if method == "GET" and parts.path == "/api/v1/nodes" and selector:
            with self._lock:
                self.requests.append((method, parts.path, {"labelSelector": selector}))
            items = [n for n in self.objects["nodes"] if _selects(selector, n["metadata"].get("labels", {}))]
            return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                         "items": items}
        return super().handle(method, raw_path, authorization)

    def _create_pod(self, ns: str, body: dict) -> tuple[int, dict]:
        pod = json.loads(json.dumps(body))
        pod.setdefault("metadata", {})["namespace"] = ns
        pod["metadata"].setdefault("uid", hashlib.md5(pod["metadata"]["name"].encode()).hexdigest())
        pod["status"] = {"phase": "Pending"}
        with self._lock:
            self.objects["pods"].append(pod)
            self.created.append(pod)
        return 201, pod

    def _find(self, ns: str, name: str) -> dict | None:
        for pod in self.objects["pods"]:
            if pod["metadata"]["namespace"] == ns and pod["metadata"]["name"] == name:
                return pod
        return None

    def _get_pod(self, ns: str, name: str) -> tuple[int, dict]:
        pod = self._find(ns, name)
        if pod is None:
            return 404, status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        behaviour = self.pod_behaviour.get(pod["spec"].get("nodeName", ""), "starts")
        if behaviour == "starts":
            pod["status"] = {"phase": "Running"}
        elif behaviour == "fails":
            pod["status"] = {"phase": "Failed"}
        else:
            pod["status"] = {"phase": "Pending", "containerStatuses": [{
                "name": "collector", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": "Back-off pulling image"}}}]}
        return 200, pod

    def _delete_pod(self, ns: str, name: str) -> tuple[int, dict]:
        pod = self._find(ns, name)
        if pod is None:
            return 404, status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        with self._lock:
            self.objects["pods"].remove(pod)
            self.deleted.append(name)
        return 200, pod

    # -- exec ---------------------------------------------------------------------------------

    def exec_command(self, ns: str, name: str, command: list[str]) -> subprocess.Popen | str:
        pod = self._find(ns, name)
        if pod is None or pod["status"].get("phase") != "Running":
            return f"pod {name} is not running"
        self.execs.append(command)
        if self.exec_delay:
            time.sleep(self.exec_delay)
        netns = self.node_netns.get(pod["spec"]["nodeName"])
        argv = ["ip", "netns", "exec", netns, *command] if netns else command
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def start(self) -> NodeApiServer:
        server = self
        base = _handler_for(self)

        class Handler(base):  # type: ignore[misc, valid-type]
            def _read_body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}") if length else {}

            def do_POST(self) -> None:  # noqa: N802
                server._request.body = self._read_body()
                self._answer()

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("Upgrade", "").lower() == "websocket" and "/exec" in self.path:
                    self._exec()
                elif urlsplit(self.path).path.endswith("/log") and "/pods/" in self.path:
                    self._log()
                else:
                    self._answer()

            def _log(self) -> None:
                """pods/NAME/log as text (tailLines honoured), 404 for a pod without a log."""
                parts = urlsplit(self.path)
                name = parts.path.strip("/").split("/")[5]
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                server.requests.append(("GET", parts.path, query))
                text = server.pod_logs.get(name)
                if text is None:
                    self._answer()
                    return
                if "tailLines" in query:
                    text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]):])
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _exec(self) -> None:
                parts = urlsplit(self.path)
                segs = parts.path.strip("/").split("/")
                command = parse_qs(parts.query).get("command", [])
                server.requests.append(("GET", parts.path, {"command": " ".join(command)[:40]}))
                key = self.headers.get("Sec-WebSocket-Key", "")
                accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
                self.send_response(101, "Switching Protocols")
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
                self.end_headers()
                self.wfile.flush()
                proc = server.exec_command(segs[3], segs[5], command)
                if isinstance(proc, str):
                    failure = {"metadata": {}, "status": "Failure", "message": proc}
                    self._frame(3, json.dumps(failure).encode())
                    self._close()
                    return
                err = []
                reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
                reader.start()
                while chunk := proc.stdout.read1(65536):
                    self._frame(1, chunk)
                code = proc.wait()
                reader.join()
                if err and err[0]:
                    self._frame(2, err[0])
                if code == 0:
                    self._frame(3, json.dumps({"metadata": {}, "status": "Success"}).encode())
                else:
                    self._frame(3, json.dumps({
                        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                        "message": f"command terminated with non-zero exit code: exit status {code}",
                        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}).encode())
                self._close()

            def _frame(self, channel: int, data: bytes, opcode: int = 0x2) -> None:
                payload = bytes([channel]) + data if opcode == 0x2 else data
                n = len(payload)
                if n < 126:
                    header = struct.pack("!BB", 0x80 | opcode, n)
                elif n < 65536:
                    header = struct.pack("!BBH", 0x80 | opcode, 126, n)
                else:
                    header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
                self.wfile.write(header + payload)
                self.wfile.flush()

            def _close(self) -> None:
                self._frame(0, struct.pack("!H", 1000), opcode=0x8)
                self.close_connection = True

        httpd = _QuietServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="node-apiserver", daemon=True)
        self._thread.start()
        return self


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client hanging up is not news
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _selects(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True
