"""The live nftables collector: a real kube-proxy ruleset loaded into a throwaway namespace."""

from __future__ import annotations

import json
import subprocess

import pytest

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect import nftables as nftcollect
from kubectl_proxydoctor.formats.nft_parse import parse_ruleset, parse_ruleset_text
from kubectl_proxydoctor.modes.nftables import interpret
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


LIST_CHAINS = """table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy accept;
	}
}
table ip kube-proxy {
	chain services {
	}
}
table inet firewalld {
	chain filter_PREROUTING {
		type filter hook prerouting priority filter + 10; policy accept;
	}
}
table inet other {
	chain helper {
	}
}
table bridge x {
	chain y {
		type filter hook prerouting priority filter; policy accept;
	}
}
"""


@pytest.mark.parametrize("pretty", [False, True])
def test_collect_asks_only_list_commands_and_skips_iptables_compat_tables(pretty):
    asked = []
    dump = (lambda d: json.dumps(d, indent=2)) if pretty else json.dumps

    def runner(cmd, sink, json=True):
        asked.append(cmd)
        if cmd == "list chains":
            assert not json
            sink(LIST_CHAINS)
            return 0, ""
        family, name = cmd.split()[2:]
        if (family, name) == ("ip6", "kube-proxy"):
            return 1, "Error: No such file or directory\nlist table ip6 kube-proxy"
        table = {"table": {"family": family, "name": name, "handle": 3}}
        meta = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
        items = [meta, table, _chain(family, name, "c")]
        text = dump({"nftables": items})
        for i in range(0, len(text), 7):  # in pieces, as a pipe delivers it
            sink(text[i:i + 7])
        return 0, ""

    text, ruleset = nftcollect.read_tables(runner)
    doc = json.loads(text)
    assert sorted(asked) == ["list chains", "list table inet firewalld", "list table ip kube-proxy",
                             "list table ip6 kube-proxy"]
    assert asked[-1] == "list table inet firewalld"  # after discovery
    assert [next(iter(i)) for i in doc["nftables"]] == ["metainfo", "table", "chain", "table", "chain"]
    assert doc["nftables"][0] == {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
    # parsed while read, exactly as parsing the stored text gives
    assert ruleset == parse_ruleset_text(text)
    assert set(ruleset.tables) == {("ip", "kube-proxy"), ("inet", "firewalld")}


@pytest.mark.parametrize("rc,err,reason", [
    (1, "Error: Operation not permitted", "not permitted"),
    (1, "Error: syntax error", "`nft list chains` failed: Error: syntax error"),
    (0, "", "no valid JSON"),
])
def test_collect_failures_are_unavailable(monkeypatch, rc, err, reason):
    monkeypatch.setattr(nftcollect, "_runner", lambda netns: (lambda cmd, sink, json=True: (rc, err)))
    ctx = CollectContext()
    nftcollect.collect(ctx)
    assert ctx.sources["nftables"].startswith("unavailable: ")
    assert reason in ctx.sources["nftables"]
    assert "nft-ruleset.json" not in ctx.files


def test_collect_without_nft_binary(monkeypatch):
    monkeypatch.setattr(nftcollect.shutil, "which", lambda name: None)
    ctx = CollectContext(netns="pd-nft-never-created")
    nftcollect.collect(ctx)
    assert ctx.sources["nftables"] == ("unavailable: nft is not installed and libnftables (libnftables1) is "
                                       "not available")


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
    ctx = CollectContext()
    nftcollect.collect(ctx)
    if ctx.sources["nftables"] != "ok":  # e.g. not root: must say why
        assert ctx.sources["nftables"].startswith("unavailable: ")
        return
    doc = json.loads(ctx.files["nft-ruleset.json"])
    assert "metainfo" in doc["nftables"][0]
    parse_ruleset(doc)


IN_NAMESPACE = """
import json
from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect import nftables as n
from kubectl_proxydoctor.collect.libnftables import LibNftables
from kubectl_proxydoctor.formats.nft_parse import parse_ruleset_text

runner = n._runner(None)
ctx = CollectContext()
n.collect(ctx)
text = ctx.files["nft-ruleset.json"]
seeded = ctx.seeds["nftables.ruleset"][1]
pieces = []
rc, err = runner("list table ip kube-proxy", pieces.append)

def failing(chunk):
    raise RuntimeError("sink failed")

try:
    runner("list table ip kube-proxy", failing)
    raised = False
except RuntimeError:
    raised = True
print(json.dumps({"in_process": isinstance(runner, LibNftables), "sources": ctx.sources,
                  "equal": seeded == parse_ruleset_text(text), "tables": sorted(map(list, seeded.tables)),
                  "pieces": len(pieces), "bytes": sum(map(len, pieces)), "rc": rc, "raised": raised}))
"""


def test_libnftables_in_process_streams_and_survives_a_failing_reader(netns):
    """In-process libnftables (run in a namespace holding a generated kube-proxy table larger than
    a pipe): the listing arrives in pieces, is parsed while read into exactly what the text gives,
    and a reader that fails mid-way gets its error back once nft is done (no hang)."""
    import sys
    from pathlib import Path

    from bench.gen_nftables import nft_script
    from bench.generate import generate_cluster

    ns = netns("pd-nft-")
    load = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], capture_output=True, text=True,
                          input=nft_script(generate_cluster(150, 4, seed=3)))
    assert load.returncode == 0, load.stderr[:2000]
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", IN_NAMESPACE],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["in_process"] and got["sources"] == {"nftables": "ok"} and got["equal"]
    assert got["tables"] == [["ip", "kube-proxy"]]
    assert got["rc"] == 0 and got["bytes"] > 500_000 and got["pieces"] > 1  # pipes hold 64 KiB
    assert got["raised"]


def test_collected_snapshot_reuses_the_ruleset_parsed_while_reading(netns):
    from kubectl_proxydoctor.collect.node import collect_node
    from kubectl_proxydoctor.modes.nftables.interpreter import load_ruleset

    ns = netns("pd-nft-")
    rules = FIXTURES / "healthy" / "nft-ruleset.txt"
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(rules)], check=True, capture_output=True)
    snap = collect_node(netns=ns)
    parsed = load_ruleset(snap)
    assert parsed is load_ruleset(snap)
    assert parsed == parse_ruleset_text(snap.files["nft-ruleset.json"])
    assert parsed is snap._derived["nftables.ruleset"][1]  # the collector's, not parsed again
    snap.files["nft-ruleset.json"] = snap.files["nft-ruleset.json"] + " "
    assert load_ruleset(snap) is not parsed  # a replaced file is parsed anew


@pytest.mark.parametrize("cmd", ["flush ruleset", "add table ip x", "delete table ip kube-proxy",
                                 "list table ip x; flush ruleset", "list table ip x\nflush ruleset"])
def test_runners_refuse_anything_but_one_list_command(cmd):
    from kubectl_proxydoctor.collect.libnftables import LibNftables

    for runner in (LibNftables(), nftcollect.cli_runner()):
        with pytest.raises(ValueError, match="only reads"):
            runner(cmd, lambda chunk: None)


def test_chains_walked_while_read_give_the_same_views(netns):
    """The collector hands the interpreter endpoint and service chains already walked
    (chain.walk) while nft was printing; the views equal those of the same text parsed afterwards,
    evidence included."""
    from bench.gen_nftables import nft_script
    from bench.generate import generate_cluster
    from kubectl_proxydoctor.collect.node import collect_node
    from kubectl_proxydoctor.modes.nftables.interpreter import parse_chain_name

    ns = netns("pd-nft-")
    cluster = generate_cluster(80, (0, 5), seed=11, lb_share=0.2, nodeport_share=0.3, affinity_share=0.2)
    load = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=nft_script(cluster),
                          capture_output=True, text=True)
    assert load.returncode == 0, load.stderr[:2000]
    snap = collect_node(netns=ns)
    seeded = snap._derived["nftables.ruleset"][1]
    table = seeded.tables[("ip", "kube-proxy")]
    kinds = {c.name: parse_chain_name(c.name) for c in table.chains.values()}
    walked = {kinds[c.name].prefix for c in table.chains.values() if c.walk is not None}
    assert walked == {"endpoint", "service", "local"}
    # every endpoint chain, and every service chain with endpoints (kube-proxy's chain order)
    assert all(c.walk is not None for c in table.chains.values()
               if kinds[c.name] and kinds[c.name].prefix in ("endpoint", "service") and c.rules)
    assert _summary(interpret(snap)) == _summary(interpret(NodeSnapshot.from_files(snap.files)))


def test_a_runner_whose_calls_take_turns_lists_only_the_tables_that_exist():
    """libnftables' calls take turns: discovery first, then no failing listing for ip6 when the
    node has no ip6 kube-proxy table, then the firewall in front."""
    asked = []
    dumps = json.dumps  # the runner's own ``json`` flag hides the module inside it

    class Serial:
        parallel = False

        def __call__(self, cmd, sink, json=True):
            asked.append(cmd)
            if cmd == "list chains":
                sink(LIST_CHAINS)
                return 0, ""
            family, name = cmd.split()[2:]
            meta = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
            table = {"table": {"family": family, "name": name, "handle": 3}}
            sink(dumps({"nftables": [meta, table, _chain(family, name, "c")]}))
            return 0, ""

    text, ruleset = nftcollect.read_tables(Serial())
    assert asked == ["list chains", "list table ip kube-proxy", "list table inet firewalld"]
    assert ruleset == parse_ruleset_text(text)


def _fake_table_runner(asked, printed, chains=LIST_CHAINS, parallel=False, fail=None):
    """A runner printing one small table per listing (recording the commands and the text)."""
    dumps = json.dumps

    def run(cmd, sink, json=True):
        asked.append(cmd)
        if fail is not None:
            return fail()
        if cmd == "list chains":
            sink(chains)
            return 0, ""
        family, name = cmd.split()[2:]
        if f"table {family} {name} " not in chains:
            return 1, f"Error: No such file or directory\n{cmd}"
        meta = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
        text = dumps({"nftables": [meta, {"table": {"family": family, "name": name, "handle": 3}},
                                   _chain(family, name, "c")]})
        printed.append(text)
        sink(text)
        return 0, ""

    run.parallel = parallel
    return run


def _failing_with(kind):
    def fail():
        if kind == "status":
            return 1, "Error: Operation not permitted"
        raise nftcollect._Unavailable("cannot run nft")
    return fail


def test_discovery_runs_alongside_a_runner_whose_calls_take_turns():
    """With libnftables (calls take turns) the nft binary runs `list chains` while libnftables
    lists ip kube-proxy; ip6 kube-proxy is listed only if discovery found it."""
    lib_asked, nft_asked, printed = [], [], []
    text, ruleset = nftcollect.read_tables(_fake_table_runner(lib_asked, printed),
                                           _fake_table_runner(nft_asked, []))
    assert nft_asked == ["list chains"]
    assert lib_asked == ["list table ip kube-proxy", "list table inet firewalld"]
    assert ruleset == parse_ruleset_text(text)
    assert set(ruleset.tables) == {("ip", "kube-proxy"), ("inet", "firewalld")}


@pytest.mark.parametrize("how", ["status", "raises"])
def test_discovery_falls_back_to_the_runner_when_the_binary_fails(how):
    lib_asked, nft_asked, printed = [], [], []
    text, ruleset = nftcollect.read_tables(_fake_table_runner(lib_asked, printed),
                                           _fake_table_runner(nft_asked, [], fail=_failing_with(how)))
    assert nft_asked == ["list chains"]
    assert lib_asked == ["list table ip kube-proxy", "list chains", "list table inet firewalld"]
    assert set(ruleset.tables) == {("ip", "kube-proxy"), ("inet", "firewalld")}


@pytest.mark.parametrize("parallel", [True, False])
def test_a_single_table_is_stored_as_nft_printed_it(parallel):
    """One kube-proxy table and nothing in front: the document is nft's own text (no copies)."""
    asked, printed = [], []
    chains = "table ip kube-proxy {\n\tchain services {\n\t}\n}\n"
    text, ruleset = nftcollect.read_tables(_fake_table_runner(asked, printed, chains, parallel))
    assert printed and text == printed[0] + "\n"
    assert ruleset == parse_ruleset_text(text)


def test_libnftables_releases_everything_when_its_thread_cannot_start(monkeypatch):
    """No thread for nft (e.g. the process is out of threads): the error is raised, and the pipe,
    the context and the lock are released, so the next call runs."""
    import os

    from kubectl_proxydoctor.collect import libnftables

    lib = libnftables.LibNftables()
    fds = len(os.listdir("/proc/self/fd"))

    class NoThread:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            raise RuntimeError("can't start new thread")

    with monkeypatch.context() as m:
        m.setattr(libnftables.threading, "Thread", NoThread)
        with pytest.raises(RuntimeError, match="new thread"):
            lib("list tables", lambda chunk: None, json=False)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert libnftables._LOCK.acquire(timeout=5)
    libnftables._LOCK.release()
    rc, _err = lib("list tables", lambda chunk: None, json=False)
    assert rc in (0, 1)  # 1 when not permitted here; what matters is that it ran
