"""Every parser, fed random and mutated real inputs, returns or raises the tool's own error.

`make test` runs a short deterministic pass; `make fuzz` sets PROXYDOCTOR_FUZZ_EXAMPLES=100000.
Parsers are listed by import path so a parser that does not exist yet is skipped, by name.
"""

from __future__ import annotations

import importlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.fuzz.strategies import FUZZ_SETTINGS, inputs

FIX = Path(__file__).parents[1] / "fixtures"

# (label, "module:function", seed capture file); the function takes the text (and maybe more)
PARSERS = [
    ("metrics", "kubectl_proxydoctor.nodeinfo:parse_metrics", "iptables/sync-failing/kube-proxy-metrics.txt"),
    ("sysctl", "kubectl_proxydoctor.nodeinfo:parse_sysctl", "iptables/healthy/sysctl.txt"),
    ("ip-addr", "kubectl_proxydoctor.nodeinfo:parse_ip_addr_json", "iptables/healthy/ip-addr.json"),
    ("healthz", "kubectl_proxydoctor.nodeinfo:parse_healthz",
     "iptables/sync-failing/kube-proxy-healthz.json"),
    ("api.json", "kubectl_proxydoctor.cluster:ClusterState.from_json_text", "iptables/healthy/api.json"),
    ("iptables-save", "kubectl_proxydoctor.modes.iptables.parse:parse",
     "iptables/healthy/iptables-nft-save.txt"),
    ("nft-json", "kubectl_proxydoctor.formats.nft_parse:parse_ruleset_text",
     "nftables/healthy/nft-ruleset.json"),
    ("ipvsadm", "kubectl_proxydoctor.formats.ipvsadm:parse", "ipvs/healthy/ipvsadm.txt"),
    ("ipvsadm-save", "kubectl_proxydoctor.formats.ipvsadm:parse", "../fuzz/seeds/ipvsadm-save.txt"),
    ("proc-ip_vs", "kubectl_proxydoctor.formats.ipvs_procfs:parse", "ipvs/healthy/proc-net-ip_vs.txt"),
    ("ipset", "kubectl_proxydoctor.modes.ipvs.ipset:parse", "ipvs/healthy/ipset-save.txt"),
    ("conntrack", "kubectl_proxydoctor.conntrack:parse_conntrack",
     "iptables/stale-udp-conntrack/conntrack.txt"),
    ("kube-proxy-config", "kubectl_proxydoctor.kubeproxy_config:parse_config_text", None),
]


def _resolve(path: str):
    module_name, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        pytest.skip(f"{module_name} does not exist ({e})")
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _fuzz(parse, seed: str):
    @FUZZ_SETTINGS
    @given(inputs(seed))
    def run(text: str) -> None:
        try:
            parse(text)
        except ProxyDoctorError:
            pass

    run()


def _kube_proxy_config_text() -> str:
    doc = json.loads((FIX / "iptables" / "healthy" / "api.json").read_text())
    return next(i["data"]["config.conf"] for i in doc["items"] if i["kind"] == "ConfigMap")


@pytest.mark.parametrize("label,path,seed", PARSERS, ids=[p[0] for p in PARSERS])
def test_parser_never_raises_foreign_errors(label, path, seed):
    _fuzz(_resolve(path), (FIX / seed).read_text() if seed else _kube_proxy_config_text())


CAPTURES = ["iptables/stale-udp-conntrack", "nftables/firewall-in-front", "ipvs/stale-endpoint"]


@pytest.mark.parametrize("capture", CAPTURES)
def test_whole_analysis_on_mutated_captures(capture):
    """One mutated file in a real capture: the whole analysis still ends in a report or a
    ProxyDoctorError, never another exception."""
    analyse = _resolve("kubectl_proxydoctor.analysis:analyse")
    from kubectl_proxydoctor.cluster import ClusterState

    base = NodeSnapshot.load(FIX / capture)
    oracles = ("expected.json", "traffic.txt", "SCENARIO.md")
    names = sorted(n for n in base.files if n not in oracles)

    @FUZZ_SETTINGS
    @given(st.sampled_from(names), st.data())
    def run(name, data):
        files = dict(base.files)
        files[name] = data.draw(inputs(files[name]))
        try:
            snap = NodeSnapshot.from_files(files)
            cluster = ClusterState.from_json_text(files["api.json"]) if "api.json" in files else None
            analyse(snap, cluster, node_name="pdnode1")
        except ProxyDoctorError:
            pass

    run()


def _tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@FUZZ_SETTINGS
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=4000))
def test_bundle_loader_on_corrupt_bytes(tmp_path_factory, junk, cut):
    real = _tar_of({"capture/meta.json": b'{"node": "n"}', "capture/kernel.txt": b"6.1.0\n"})
    path = tmp_path_factory.mktemp("b") / "node.tar.gz"
    for data in (junk, real[:cut], real[:cut] + junk):
        path.write_bytes(data)
        try:
            NodeSnapshot.load(path)
        except ProxyDoctorError:
            pass


@st.composite
def _edited_json(draw: st.DrawFn, text: str) -> str:
    """A compact nft JSON document with a few character-level edits (cut, delete, insert)."""
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=len(text)))
        op = draw(st.sampled_from(["cut", "delete", "insert"]))
        if op == "cut":
            text = text[:i]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(min_value=1, max_value=40)):]
        else:
            junk = st.sampled_from(['}}, {"rule": {"family": ', ",", "]", "}", '"', " ", "\\"])
            text = text[:i] + draw(junk | st.text(max_size=8)) + text[i:]
    return text


def test_streamed_nft_json_agrees_with_whole_parse():
    """Decoding nft's JSON while it is read (any pieces) gives the same ruleset as decoding the
    whole text, or a ParseError exactly when the whole parse raises one."""
    from kubectl_proxydoctor.errors import ParseError
    from kubectl_proxydoctor.formats.nft_parse import parse_ruleset_text
    from kubectl_proxydoctor.formats.nft_stream import parse_stream

    seed = (FIX / "nftables" / "firewall-in-front" / "nft-ruleset.json").read_text()

    @FUZZ_SETTINGS
    @given(_edited_json(seed), st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=30))
    def run(text: str, sizes: list[int]) -> None:
        pieces, i, k = [], 0, 0
        while i < len(text):
            pieces.append(text[i:i + sizes[k % len(sizes)]])
            i += sizes[k % len(sizes)]
            k += 1
        try:
            whole = parse_ruleset_text(text)
        except ParseError:
            whole = None
        try:
            streamed = parse_stream(pieces)
        except ParseError:
            streamed = None
        assert streamed == whole

    run()


@st.composite
def _edited_items(draw: st.DrawFn, items: list) -> list:
    """nft JSON items with item-level edits: rules moved, dropped or re-targeted, chains listed
    again, numgen moduli changed."""
    import copy

    items = copy.deepcopy(items)
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        rules = [i for i, item in enumerate(items) if "rule" in item]
        if not rules:
            break
        i = draw(st.sampled_from(rules))
        op = draw(st.sampled_from(["move", "drop", "relist", "retarget", "modulus"]))
        if op == "move":
            items.insert(draw(st.sampled_from(rules)), items.pop(i))
        elif op == "drop":
            del items[i]
        elif op == "relist":  # the rule's chain listed again, later: it replaces the first
            body = items[i]["rule"]
            chain = next((c for c in items if "chain" in c and c["chain"]["name"] == body["chain"]
                          and c["chain"]["family"] == body["family"]), None)
            if chain is not None:
                items.insert(draw(st.integers(min_value=i, max_value=len(items))), copy.deepcopy(chain))
        elif op == "retarget":
            for stmt in items[i]["rule"]["expr"]:
                if isinstance(stmt.get("dnat"), dict):
                    stmt["dnat"]["addr"] = draw(st.sampled_from(["10.99.0.1", "10.244.0.11"]))
        else:
            for stmt in items[i]["rule"]["expr"]:
                key = stmt["vmap"].get("key") if isinstance(stmt.get("vmap"), dict) else None
                if isinstance(key, dict) and isinstance(key.get("numgen"), dict):
                    key["numgen"]["mod"] = draw(st.integers(min_value=0, max_value=4))
    return items


@pytest.mark.parametrize("capture", ["healthy", "firewall-in-front", "stale-endpoint"])
def test_chains_walked_while_read_agree_with_walking_afterwards(capture):
    """The nftables chains walked while a listing is read (RulesetBuilder on_chain_done) give the
    same views and problems as walking the finished ruleset, whatever the items' order."""
    from tests.test_nftables_interpret import _walked_and_plain

    items = json.loads((FIX / "nftables" / capture / "nft-ruleset.json").read_text())["nftables"]

    @FUZZ_SETTINGS
    @given(_edited_items(items))
    def run(edited: list) -> None:
        (views, problems, _), (plain_views, plain_problems, _) = _walked_and_plain(edited)
        assert views == plain_views  # or the same ParseError
        assert problems == plain_problems

    run()
