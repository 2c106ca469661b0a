"""NodeState.facts: endpoints come from the API only when it listed them; a live API that refused
(an empty ClusterState with failed sources) leaves them unknown, never "no endpoint"."""

from __future__ import annotations

from pathlib import Path

from kubectl_proxydoctor.cluster import ClusterState, of_capture
from kubectl_proxydoctor.node_state import build_node_state
from kubectl_proxydoctor.snapshot import NodeSnapshot

CAPTURE = Path(__file__).parent / "fixtures" / "iptables" / "healthy"


def _without_api() -> NodeSnapshot:
    snapshot = NodeSnapshot.load(CAPTURE)
    return NodeSnapshot.from_files({k: v for k, v in snapshot.files.items() if k != "api.json"}
                                   | {"meta.json": '{"node": "pdnode1"}'})


def test_a_refused_live_api_leaves_endpoints_unknown():
    refused = ClusterState(origin="live", sources={"list services": "not read: forbidden",
                                                   "list endpointslices": "not read: forbidden"})
    state = build_node_state(_without_api(), refused)
    assert state.facts.endpoints is None


def test_no_api_leaves_endpoints_unknown():
    assert build_node_state(_without_api(), None).facts.endpoints is None


def test_a_listed_api_gives_the_endpoints():
    snapshot = NodeSnapshot.load(CAPTURE)
    state = build_node_state(snapshot, of_capture(snapshot))
    assert state.facts.endpoints
