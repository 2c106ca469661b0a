"""The fast paths of issue 18 answer exactly as the general code they stand in front of.

canonical IPv4 (netparse.is_canonical_v4 / ipv4_int) against ipaddress and the sloppy parser;
the api.json shape trie (cluster._fits) against the named walk (cluster._walk) on damaged objects.
"""

from __future__ import annotations

import copy
import ipaddress
import random

import pytest

from kubectl_proxydoctor.cluster import _SHAPES, _TRIES, ClusterState, _fits, _walk
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.model import Endpoint, ip_sort_key
from kubectl_proxydoctor.netparse import canonical_ip, ipv4_int, parse_ip_sloppy

ODD = ["0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5",
       "1.2.3.4\n", " 1.2.3.4", "\u0661.2.3.4", "1..2.3", "::1", "::ffff:10.0.0.1", "fe80::1%eth0", "", "x"]


def _addresses(n: int = 5000) -> list[str]:
    rng = random.Random(18)
    out = list(ODD)
    for _ in range(n):
        out.append(".".join(rng.choice([str(rng.randint(0, 300)), "0" + str(rng.randint(0, 99))])
                            for _ in range(4)))
    return out


def _reference_key(ip: str) -> tuple[int, int, str]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0, ip)
    return (addr.version, int(addr), "")


def test_ip_sort_key_is_ipaddress_order():
    for ip in _addresses():
        assert ip_sort_key(ip) == _reference_key(ip), ip
    eps = [Endpoint("10.0.0.10", 80), Endpoint("10.0.0.9", 80), Endpoint("fd00::1", 80),
           Endpoint("10.0.0.9", 8)]
    assert [str(e) for e in sorted(eps, key=Endpoint.sort_key)] == [
        "10.0.0.9:8", "10.0.0.9:80", "10.0.0.10:80", "[fd00::1]:80"]


def test_canonical_ip_is_the_sloppy_parse():
    for ip in _addresses():
        assert canonical_ip(ip) == parse_ip_sloppy.__wrapped__(ip), ip
    assert canonical_ip("010.000.0.1") == "10.0.0.1"
    assert ipv4_int("10.0.0.1") == 0x0A000001 and ipv4_int("010.0.0.1") is None and ipv4_int("::1") is None


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, child in value.items():
            yield from _paths(child, (*prefix, k))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


ITEMS = [
    {"kind": "Service", "metadata": {"name": "web", "namespace": "default", "labels": {"a": "b"}},
     "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "externalIPs": ["192.0.2.1"],
              "ports": [{"name": "http", "port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8"],
              "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}},
     "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}},
    {"kind": "EndpointSlice", "metadata": {"name": "web-1", "namespace": "default"},
     "ports": [{"name": "http", "port": 8080}],
     "endpoints": [{"addresses": ["10.64.0.1"], "conditions": {"ready": True}, "hints": {"forZones": []},
                    "targetRef": {"name": "p"}}, {"addresses": ["10.64.0.2"], "conditions": {}}]},
    {"kind": "Node", "metadata": {"name": "n1"}, "status": {"addresses": [{"address": "172.30.0.1"}],
                                                            "nodeInfo": {}}},
    {"kind": "ConfigMap", "metadata": {"name": "kube-proxy"}, "data": {"config.conf": ""}},
    {"kind": "Pod", "metadata": {"name": "kube-proxy-x"}, "spec": {}, "status": {}},
]


@pytest.mark.parametrize("seed", range(4))
def test_shape_trie_accepts_what_the_walk_accepts(seed):
    rng = random.Random(seed)
    junk = [1, "x", [], {}, None, [1], [{}], True, [{"a": 1}]]
    misfits = 0
    for _ in range(1500):
        item = copy.deepcopy(rng.choice(ITEMS))
        for _ in range(rng.randint(1, 2)):
            damageable = [p for p in _paths(item) if len(p) > 1 or p and p[0] not in ("metadata", "kind")]
            path = rng.choice(damageable)
            parent = item
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = copy.deepcopy(rng.choice(junk))
        kind = str(item["kind"])
        try:
            for path in _SHAPES["*"] + _SHAPES.get(kind, ()):
                _walk(item, path, "item", "api.json")
            walk_ok = True
        except ParseError:
            walk_ok = False
        assert _fits(item, _TRIES.get(kind) or _TRIES["*"]) == walk_ok, item
        misfits += not walk_ok
        if not walk_ok:  # the error still names the first misfit, as before
            with pytest.raises(ParseError):
                ClusterState.from_list({"items": [item]})
    assert misfits > 100  # the damage reached the shapes often enough to compare both answers
