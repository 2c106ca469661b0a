"""list+watch against the test API server with watch support: changes arrive with the service they
affect, a watch that ends is resumed, a too-old resourceVersion (410) makes it list again and report
what changed meanwhile, Node status heartbeats are ignored, a forbidden list is an unknown verdict;
and Events are created, aggregated into one (count) and rate-limited."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest

from kubectl_proxydoctor.serve.apiwatch import WatchedApi
from kubectl_proxydoctor.serve.events import EventCorrelator, EventSink, messages
from kubectl_proxydoctor.serve.grace import Transitions
from kubectl_proxydoctor.serve.latency import NODE_KEY
from kubectl_proxydoctor.serve.verdict import DriftKey, Verdict
from tests.apiserver import write_kubeconfig
from tests.conftest import FIXTURES
from tests.serve_helpers import wait_for
from tests.watch_apiserver import WatchApiServer

API = FIXTURES / "iptables/healthy/api.json"


def _slice(server: WatchApiServer, service: str) -> dict:
    for obj in server.objects["endpointslices"]:
        if obj["metadata"]["labels"].get("kubernetes.io/service-name") == service:
            return copy.deepcopy(obj)
    raise KeyError(service)


@pytest.fixture
def api(tmp_path: Path):
    server = WatchApiServer.from_api_json(API)
    with server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
        changes: list[tuple[str, int, str]] = []
        lines: list[str] = []
        watched = WatchedApi(str(kubeconfig), None, "pdnode1", log=lines.append, watch_timeout=2)
        watched.on_change = lambda key, seq, what: changes.append((key, seq, what))
        stop = threading.Event()
        watched.start(stop)
        try:
            yield server, watched, changes, lines
        finally:
            stop.set()
            server.drop_watches()
            watched.stop()


def test_list_then_watch_delivers_changes(api) -> None:
    server, watched, changes, lines = api
    state, seq0 = watched.current()
    assert len(state.services) == len(server.objects["services"]) > 10
    assert [n["metadata"]["name"] for n in state.nodes] == ["pdnode1"]
    assert all(state.sources[f"list {a}"] == "ok" for a in ("services", "endpointslices", "nodes"))
    assert changes == []
    web = _slice(server, "web")
    web["endpoints"] = web["endpoints"][:1]
    server.apply(web)
    wait_for(lambda: changes, 5, what="a watch event")
    key, seq, what = changes[0]
    assert key == "default/web" and seq > seq0
    assert what == f"MODIFIED EndpointSlice default/{web['metadata']['name']}"
    state, seq1 = watched.current()
    got = next(s for s in state.endpointslices if s["metadata"]["name"] == web["metadata"]["name"])
    assert len(got["endpoints"]) == 1 and seq1 == seq
    server.delete("Service", "default", "dns")
    wait_for(lambda: len(changes) == 2, 5, what="the deletion")
    assert changes[1][0] == "default/dns" and changes[1][2] == "DELETED Service default/dns"
    assert not any(s["metadata"]["name"] == "dns" for s in watched.current()[0].services)


def test_node_heartbeats_are_ignored_labels_are_not(api) -> None:
    server, watched, changes, _ = api
    node = server.get("Node", None, "pdnode1")
    node.setdefault("status", {})["conditions"] = [{"type": "Ready", "status": "True", "reason": "beat"}]
    server.apply(node)
    other = copy.deepcopy(node)
    other["metadata"]["name"] = "pdnode2"
    server.apply(other)  # another node: not watched (fieldSelector)
    node["metadata"].setdefault("labels", {})["topology.kubernetes.io/zone"] = "z2"
    server.apply(node)
    wait_for(lambda: changes, 5, what="the label change")
    time.sleep(0.5)
    assert [c[0] for c in changes] == [NODE_KEY]
    assert [n["metadata"]["name"] for n in watched.current()[0].nodes] == ["pdnode1"]


def test_watch_resumes_and_relists_after_410(api) -> None:
    server, watched, changes, lines = api
    # the first watches end (timeoutSeconds 2) and are resumed
    wait_for(lambda: server.watch_requests >= 6, 10, what="watches resumed")
    assert not any("unreachable" in line for line in lines), lines
    lists_before = sum(1 for m, p, q in server.requests if m == "GET" and p.endswith("/endpointslices"))
    server.paused = True
    web = _slice(server, "web")
    web["endpoints"] = web["endpoints"][:1]
    server.apply(web)
    server.compact()
    server.paused = False
    server.drop_watches()
    wait_for(lambda: changes, 10, what="the change, found by listing again")
    assert changes[0][0] == "default/web" and changes[0][2].startswith("MODIFIED EndpointSlice")
    assert any("410 Gone" in line for line in lines)
    lists_after = sum(1 for m, p, q in server.requests if m == "GET" and p.endswith("/endpointslices"))
    assert lists_after > lists_before
    assert watched.current()[0].sources["list endpointslices"] == "ok"


def test_forbidden_list_is_an_error_source(tmp_path: Path) -> None:
    server = WatchApiServer.from_api_json(API)
    server.forbid("list", "endpointslices")
    with server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
        lines: list[str] = []
        watched = WatchedApi(str(kubeconfig), None, "pdnode1", log=lines.append, watch_timeout=2)
        stop = threading.Event()
        watched.start(stop)
        try:
            state, _ = watched.current()
            assert state.sources["list services"] == "ok"
            assert state.sources["list endpointslices"].startswith("forbidden: watch endpointslices")
            from kubectl_proxydoctor.analysis import api_problem

            assert "forbidden" in api_problem(state)
        finally:
            stop.set()
            server.drop_watches()
            watched.stop()


A = DriftKey("default/web:http/TCP", "drift", "IPv4")
B = DriftKey("default/web:https/TCP", "not-programmed", "IPv6")
C = DriftKey("kube-system/dns:dns/UDP", "drift", "IPv4")


def test_event_messages_group_by_service_and_node() -> None:
    out = messages(Transitions(started=[A, B, C], ended=[]), "n1")
    assert [(o, r, t) for o, r, t, _ in out] == [
        (("Service", "default", "web"), "KubeProxyDatapathDrift", "Warning"),
        (("Service", "kube-system", "dns"), "KubeProxyDatapathDrift", "Warning"),
        (("Node", "", "n1"), "KubeProxyDatapathDrift", "Warning")]
    assert out[0][3] == ("kube-proxy's rules on node n1 differ from the API for http/TCP (drift, IPv4), "
                         "https/TCP (not-programmed, IPv6)")
    assert out[2][3].startswith("drift started on 3 service port(s): default/web:http/TCP (drift, IPv4)")


def test_correlator_aggregates_and_rate_limits() -> None:
    c = EventCorrelator(window=600, burst=3, refill=300)
    obj = ("Service", "default", "web")
    assert c.decide(obj, "R", 0) == ("create", None)
    from kubectl_proxydoctor.serve.events import Posted

    c.remember(obj, "R", Posted("web.1", "default", 1, "t", 0))
    decision, previous = c.decide(obj, "R", 10)
    assert decision == "patch" and previous.name == "web.1"
    assert c.decide(obj, "R", 20)[0] == "patch"
    assert c.decide(obj, "R", 30) == ("drop", None)  # burst of 3 used
    assert c.decide(obj, "R", 330)[0] == "patch"  # one token back after 300 s
    assert c.decide(obj, "R", 2000)[0] == "create"  # outside the aggregation window


def test_events_posted_aggregated_and_failures_counted(tmp_path: Path) -> None:
    server = WatchApiServer.from_api_json(API)
    with server:
        from kubectl_proxydoctor.collect.api import load_client

        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
        client = load_client(str(kubeconfig)).client
        now = [0.0]
        errors: list[str] = []
        lines: list[str] = []
        sink = EventSink(client, "pdnode1", log=lines.append, clock=lambda: now[0], on_error=errors.append,
                         uid_of=lambda kind, ns, name: f"uid-{name}")
        sink.transitions(Transitions(started=[A]), Verdict())
        assert len(server.events) == 2
        svc_event = next(e for (ns, _), e in server.events.items() if ns == "default"
                         and e["involvedObject"]["kind"] == "Service")
        assert svc_event["involvedObject"] == {"kind": "Service", "name": "web", "namespace": "default",
                                               "apiVersion": "v1", "uid": "uid-web"}
        assert svc_event["type"] == "Warning" and svc_event["reason"] == "KubeProxyDatapathDrift"
        node_event = next(e for e in server.events.values() if e["involvedObject"]["kind"] == "Node")
        assert node_event["metadata"]["namespace"] == "default" and node_event["count"] == 1
        now[0] = 60.0
        sink.transitions(Transitions(started=[A]), Verdict())  # the same again: aggregated
        assert len(server.events) == 2 and svc_event["count"] == 2 and node_event["count"] == 2
        sink.transitions(Transitions(ended=[A]), Verdict())
        assert {e["reason"] for e in server.events.values()} == {"KubeProxyDatapathDrift",
                                                                 "KubeProxyDatapathDriftResolved"}
        assert len(server.events) == 4
        server.forbid_events = True
        now[0] = 5000.0
        sink.transitions(Transitions(started=[C]), Verdict())
        assert errors == ["events", "events"] and any("HTTP 403" in line for line in lines)
        client.close()


def test_cached_objects_drop_field_managers_and_the_last_applied_copy() -> None:
    from kubectl_proxydoctor.serve.apiwatch import LAST_APPLIED, _slim

    hint = {"service.kubernetes.io/topology-mode": "Auto"}
    obj = {"metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}],
                        "annotations": {LAST_APPLIED: "{...}", **hint}}}
    _slim(obj)
    assert obj == {"metadata": {"name": "web", "annotations": hint}}
