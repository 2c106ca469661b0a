"""The compiled shape checks of api.json objects (cluster._CHECKS) accept exactly what the walk
that names a misfit (cluster._walk) accepts: a wrong JSON type at every level of every checked path
is the same one-line ParseError, and junk list elements are still skipped."""

from __future__ import annotations

import copy

import pytest

from kubectl_proxydoctor.cluster import _SHAPES, ClusterState
from kubectl_proxydoctor.errors import ParseError

KINDS = {"Service": "services", "EndpointSlice": "endpointslices", "Node": "nodes", "ConfigMap": "configmaps",
         "DaemonSet": "daemonsets", "Pod": "pods"}


def _object(kind: str) -> dict:
    """A well-formed object of ``kind`` holding every checked path (lists with one object each)."""
    obj: dict = {"kind": kind, "metadata": {"name": "x", "namespace": "ns"}}
    for path in _SHAPES["*"] + _SHAPES.get(kind, ()):
        cur = obj
        for i, step in enumerate(path):
            if step in ("[]", "list"):
                break
            last = i == len(path) - 1
            nxt = path[i + 1] if not last else None
            if step not in cur:
                cur[step] = [] if nxt in ("[]", "list") else {}
            if nxt == "[]":
                if not cur[step]:
                    cur[step].append({})
                cur = cur[step][0]
                continue
            if nxt == "list":
                break
            cur = cur[step]
    return obj


def _misfits(kind: str) -> list[tuple[str, tuple[str, ...], object, str]]:
    """(case id, keys to the replaced value, wrong value, the error's expected ending) for every
    level of every checked path of ``kind``: a string where a list is read, a list where an object is."""
    out = []
    for path in _SHAPES["*"] + _SHAPES.get(kind, ()):
        keys: tuple[str, ...] = ()
        for i, step in enumerate(path):
            if step in ("[]", "list"):
                continue
            keys += (step,)
            read_as_list = i + 1 < len(path) and path[i + 1] in ("[]", "list")
            wrong: object = "bogus" if read_as_list else ["bogus"]
            want = "expected a list" if read_as_list else "expected an object"
            out.append((f"{kind}:{'.'.join(keys)}", keys, wrong, want))
    return out


def _set(obj: dict, prefix: tuple[str, ...], value: object) -> None:
    cur: object = obj
    for step in prefix[:-1]:
        assert isinstance(cur, dict)
        cur = cur[step]
        if isinstance(cur, list):
            cur = cur[0]
    assert isinstance(cur, dict)
    cur[prefix[-1]] = value


CASES = [case for kind in KINDS for case in _misfits(kind) if case[1] != ("metadata",)]


def test_the_well_formed_objects_pass():
    items = [_object(kind) for kind in KINDS]
    state = ClusterState.from_list({"kind": "List", "items": items})
    assert [len(getattr(state, attr)) for attr in KINDS.values()] == [1] * len(KINDS)


@pytest.mark.parametrize(("case", "prefix", "wrong", "want"), CASES, ids=[c[0] for c in CASES])
def test_a_wrong_type_at_each_level_is_named(case, prefix, wrong, want):
    kind = case.split(":")[0]
    good = [_object(k) for k in KINDS]
    bad = copy.deepcopy(_object(kind))
    _set(bad, prefix, wrong)
    with pytest.raises(ParseError) as err:
        ClusterState.from_list({"kind": "List", "items": [*good, bad]})
    message = str(err.value)
    assert f"item {len(good)} ({kind} x)" in message and message.endswith(want), message
    assert len(message.splitlines()) == 1


def test_the_first_misfit_in_document_order_is_named():
    first, second = _object("Service"), _object("EndpointSlice")
    first["spec"]["ports"] = "bogus"
    second["endpoints"][0]["conditions"] = "bogus"
    with pytest.raises(ParseError, match=r"item 1 \(Service x\)\.spec\.ports: expected a list"):
        ClusterState.from_list({"kind": "List", "items": [_object("Node"), first, second]})


def test_junk_elements_of_read_lists_are_skipped_at_every_level():
    sl = _object("EndpointSlice")
    sl["endpoints"] = ["junk", 3, None, {"addresses": ["10.0.0.1"], "conditions": {"ready": True}}]
    sl["ports"] = ["junk"]
    svc = _object("Service")
    svc["status"]["loadBalancer"]["ingress"] = ["junk", {"ip": "192.0.2.1"}]
    state = ClusterState.from_list({"kind": "List", "items": [sl, svc]})
    assert state.endpointslices == [sl] and state.services == [svc]


def test_a_wrong_type_inside_the_hundred_thousandth_endpoint_is_found():
    sl = _object("EndpointSlice")
    sl["endpoints"] = [{"addresses": [f"10.0.{i // 256}.{i % 256}"], "conditions": {"ready": True}}
                       for i in range(100_000)]
    sl["endpoints"][-1]["hints"] = "bogus"
    with pytest.raises(ParseError, match=r"\.endpoints\[99999\]\.hints: expected an object"):
        ClusterState.from_list({"kind": "List", "items": [sl]})
