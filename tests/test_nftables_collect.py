"""The live nftables collector: a real kube-proxy ruleset loaded into a throwaway namespace."""

from __future__ import annotations

import json
import subprocess

import pytest

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect import nftables as nftcollect
from kubectl_proxydoctor.modes.nftables import interpret
from kubectl_proxydoctor.modes.nftables.parse import parse_ruleset
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_nftables_expect import FIXTURES


def _summary(views):
    out = {}
    for view in views:
        for (name, family), port in view.ports.items():
            out[(view.source, name.key, family)] = sorted(
                (f.kind, f.ip, f.port, f.protocol, f.policy, f.no_endpoints, f.masquerade,
                 tuple(f.source_ranges), f.affinity_seconds,
                 tuple(sorted((str(t.endpoint), round(t.probability, 9)) for t in f.targets)),
                 tuple(f.evidence))
                for f in port.frontends)
    return out


@pytest.mark.parametrize("capture", ["healthy", "firewall-in-front"])
def test_collect_in_namespace_matches_capture(netns, capture):
    ns = netns("pd-nft-")
    rules = FIXTURES / capture / "nft-ruleset.txt"
    load = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(rules)], capture_output=True,
                          text=True)
    assert load.returncode == 0, load.stderr
    ctx = CollectContext(netns=ns)
    nftcollect.collect(ctx)
    assert ctx.sources == {"nftables": "ok"}
    doc = json.loads(ctx.files["nft-ruleset.json"])
    tables = {(i["table"]["family"], i["table"]["name"]) for i in doc["nftables"] if "table" in i}
    want = {("ip", "kube-proxy"), ("ip6", "kube-proxy")}
    if capture == "firewall-in-front":
        want.add(("inet", "hostfw"))
    assert tables == want
    live = interpret(NodeSnapshot.from_files(ctx.files))
    captured = interpret(NodeSnapshot.load(FIXTURES / capture))
    assert _summary(live) == _summary(captured)
    assert len(_summary(live)) == 16


def _chain(family, table, name, hook=None):
    body = {"family": family, "table": table, "name": name, "handle": 1}
    if hook:
        body.update({"type": "filter", "hook": hook, "prio": 0, "policy": "accept"})
    return {"chain": body}


@pytest.mark.parametrize("pretty", [False, True])
def test_collect_asks_only_list_commands_and_skips_iptables_compat_tables(pretty):
    asked = []
    listing = {"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                            _chain("ip", "filter", "INPUT", "input"),
                            _chain("ip", "kube-proxy", "services"),
                            _chain("inet", "firewalld", "filter_PREROUTING", "prerouting"),
                            _chain("inet", "other", "helper"),
                            _chain("bridge", "x", "y", "prerouting")]}
    dump = (lambda d: json.dumps(d, indent=2)) if pretty else json.dumps

    def runner(cmd):
        asked.append(cmd)
        if cmd == "list chains":
            return 0, dump(listing), ""
        family, name = cmd.split()[2:]
        if (family, name) == ("ip6", "kube-proxy"):
            return 1, "", "Error: No such file or directory\nlist table ip6 kube-proxy"
        table = {"table": {"family": family, "name": name, "handle": 3}}
        items = [{"metainfo": {"version": "1.0.6"}}, table, _chain(family, name, "c")]
        return 0, dump({"nftables": items}), ""

    doc = json.loads(nftcollect.read_tables(runner))
    assert sorted(asked) == ["list chains", "list table inet firewalld", "list table ip kube-proxy",
                             "list table ip6 kube-proxy"]
    assert asked[-1] == "list table inet firewalld"  # after discovery
    assert [next(iter(i)) for i in doc["nftables"]] == ["metainfo", "table", "chain", "table", "chain"]
    assert doc["nftables"][0] == {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}


@pytest.mark.parametrize("rc,err,reason", [
    (1, "Error: Operation not permitted", "not permitted"),
    (1, "Error: syntax error", "`nft list chains` failed: Error: syntax error"),
    (0, "", "no valid JSON"),
])
def test_collect_failures_are_unavailable(monkeypatch, rc, err, reason):
    monkeypatch.setattr(nftcollect, "_runner", lambda netns: (lambda cmd: (rc, "", err)))
    ctx = CollectContext()
    nftcollect.collect(ctx)
    assert ctx.sources["nftables"].startswith("unavailable: ")
    assert reason in ctx.sources["nftables"]
    assert "nft-ruleset.json" not in ctx.files


def test_collect_without_nft_binary(monkeypatch):
    monkeypatch.setattr(nftcollect.shutil, "which", lambda name: None)
    ctx = CollectContext(netns="pd-nft-never-created")
    nftcollect.collect(ctx)
    assert ctx.sources["nftables"] == ("unavailable: nft is not installed and the libnftables python module "
                                       "is not available")


def test_generated_ruleset_loads_and_interprets(netns):
    from bench.gen_nftables import expected_ports, nft_script
    from bench.generate import generate_cluster

    cluster = generate_cluster(60, (0, 6), seed=7, lb_share=0.2, nodeport_share=0.3, affinity_share=0.2)
    ns = netns("pd-nft-")
    load = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=nft_script(cluster),
                          capture_output=True, text=True)
    assert load.returncode == 0, load.stderr[:2000]
    ctx = CollectContext(netns=ns)
    nftcollect.collect(ctx)
    [view] = interpret(NodeSnapshot.from_files(ctx.files))
    got = {name.key: {str(e) for e in port.endpoints} for (name, _f), port in view.ports.items()}
    assert got == expected_ports(cluster)
    kinds = {f.kind for p in view.ports.values() for f in p.frontends}
    assert {"cluster-ip", "node-port", "load-balancer"} <= kinds
    assert any(f.affinity_seconds == 10800 for p in view.ports.values() for f in p.frontends)
    assert any(f.policy == "local" for p in view.ports.values() for f in p.frontends)
    # NodePorts: externalTrafficPolicy Local reaches only this node's endpoints, or drops
    by_key = {name.key: port for (name, _f), port in view.ports.items()}
    checked = set()
    for svc in cluster.services:
        for p in svc.ports:
            if not p.node_port:
                continue
            eps = [e for e in svc.endpoints if e.ready]
            local = {f"{e.ip}:{p.target_port}" for e in eps if e.node == cluster.node}
            port = by_key[f"{svc.port_name(p)}/{p.protocol}"]
            [fe] = [f for f in port.frontends if f.kind == "node-port"]
            if not eps:
                assert (fe.targets, fe.no_endpoints) == ([], "reject")
            elif svc.external_policy == "Local":
                assert fe.policy == "local" and {str(e) for e in fe.endpoints} == local
                assert fe.no_endpoints == (None if local else "drop")
                checked.add("local-with" if local else "local-without")
            else:
                everywhere = {f"{e.ip}:{p.target_port}" for e in eps}
                assert fe.policy == "cluster" and {str(e) for e in fe.endpoints} == everywhere
    assert checked == {"local-with", "local-without"}


def test_collect_on_this_host_through_libnftables():
    pytest.importorskip("nftables")
    ctx = CollectContext()
    nftcollect.collect(ctx)
    if ctx.sources["nftables"] != "ok":  # e.g. not root: must say why
        assert ctx.sources["nftables"].startswith("unavailable: ")
        return
    doc = json.loads(ctx.files["nft-ruleset.json"])
    assert "metainfo" in doc["nftables"][0]
    parse_ruleset(doc)
