"""meta.json ``source_states`` is advisory: a capture from another tool (or a hand edit) whose value
is not one a collector records still loads, and its reasons' text decides."""

from __future__ import annotations

import json

import pytest

from kubectl_proxydoctor.snapshot import NodeSnapshot
from kubectl_proxydoctor.sources import Readability, Why, decode_state, read_failures, source_state

DENIED = "unavailable: iptables-legacy-save: Permission denied"


def _capture(states: object) -> NodeSnapshot:
    meta = {"node": "n1", "sources": {"iptables-legacy-save.txt": DENIED}, "source_states": states}
    return NodeSnapshot.from_files({"meta.json": json.dumps(meta)})


@pytest.mark.parametrize("states", ["absent", ["absent"], 3])
def test_source_states_of_another_shape_are_ignored(states):
    snapshot = _capture(states)
    assert snapshot.states == {}
    state = source_state(snapshot, "iptables-legacy-save.txt")
    assert (state.state, state.why) == (Readability.UNREADABLE, Why.NEEDS_ROOT)


@pytest.mark.parametrize("recorded", ["ok", "not-captured", "unreadable", "absent/needs root",
                                      "unreadable/file not captured", {"state": "ok"}])
def test_a_value_no_collector_records_falls_back_to_the_text(recorded):
    snapshot = _capture({"iptables-legacy-save.txt": recorded})
    state = source_state(snapshot, "iptables-legacy-save.txt")
    assert (state.state, state.why) == (Readability.UNREADABLE, Why.NEEDS_ROOT)
    assert "None" not in state.describe()
    assert read_failures(snapshot) == {"iptables-legacy-save.txt": DENIED}


def test_the_recorded_values_decode():
    assert decode_state("absent") == (Readability.ABSENT, None)
    assert decode_state("unreadable/binary missing") == (Readability.UNREADABLE, Why.TOOL_MISSING)
    assert decode_state("ok") is None
