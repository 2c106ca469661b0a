"""Issue 19: dumps answered on a few sockets at once (collect/nft_nlfetch.py) come back in request
order, equal to one socket's answers, across rounds; a failed dump raises; the collectors run at
once and a failing one is still recorded unknown with its reason, the others' files kept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubectl_proxydoctor.collect import nft_netlink as nl
from kubectl_proxydoctor.collect import nft_nlfetch, node
from kubectl_proxydoctor.collect.nft_nlfetch import Fetcher
from kubectl_proxydoctor.collect.nft_nlvalues import attrs, cstr

RULESET = Path(__file__).parent / "fixtures" / "nftables" / "healthy" / "nft-ruleset.txt"
IP = 2  # NFPROTO_IPV4


def _request(msg: int, *attributes: str) -> bytes:
    extra = b"".join(nl.attribute(kind, value.encode() + b"\0") for kind, value in enumerate(attributes, 1))
    return nl.read_only_request(msg, IP, 1, extra)


def _loaded(netns) -> str:
    ns = netns("pd-nlfetch-")
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(RULESET)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return ns


def _requests(sock) -> list[bytes]:
    """Every set's element dump and every chain's rule dump of ip kube-proxy."""
    sets = [cstr(attrs(b, 4)[2]) for b in nl.dump_on(sock, _request(nl.NFT_MSG_GETSET, "kube-proxy"))]
    chains = [cstr(attrs(b, 4)[3]) for b in nl.dump_on(sock, _request(nl.NFT_MSG_GETCHAIN, "kube-proxy"))]
    assert sets and chains
    return ([_request(nl.NFT_MSG_GETSETELEM, "kube-proxy", s) for s in sets]
            + [_request(nl.NFT_MSG_GETRULE, "kube-proxy", c) for c in chains])


def test_answers_come_in_request_order_equal_to_one_socket_across_rounds(netns, monkeypatch):
    ns = _loaded(netns)
    monkeypatch.setattr(nft_nlfetch, "WINDOW", 7)  # several rounds, parts of one or two requests
    with nl.open_socket(ns) as sock:
        requests = _requests(sock) * 3
        serial = [nl.dump_on(sock, r) for r in requests]
        # elements with a timeout carry their expiry countdown: compare the answers that hold still
        steady = [i for i, r in enumerate(requests) if nl.dump_on(sock, r) == serial[i]]
    with Fetcher(ns, workers=3) as fetcher:
        fetched = list(fetcher.dumps(requests))
        assert len(fetcher._sockets) >= 2  # the work was spread over the workers' own sockets
    assert len(fetched) == len(requests)
    assert [fetched[i] for i in steady] == [serial[i] for i in steady]
    assert len(steady) > len(requests) // 2 and any(serial[i] for i in steady)


def test_a_failed_dump_raises_with_the_kernels_reason(netns):
    ns = _loaded(netns)
    with nl.open_socket(ns) as sock:
        requests = _requests(sock)
    missing = _request(nl.NFT_MSG_GETSETELEM, "kube-proxy", "no-such-set")
    with Fetcher(ns, workers=2) as fetcher, pytest.raises(nl.NetlinkError) as failed:
        list(fetcher.dumps([*requests, missing]))
    assert failed.value.errno == 2  # ENOENT


class _Failing:
    @staticmethod
    def collect(ctx) -> None:
        ctx.ok("half-read.txt", "half-read.txt", "x\n")
        raise RuntimeError("boom")


def test_collectors_run_at_once_and_a_failing_one_is_unknown_with_its_reason(netns, monkeypatch):
    ns = netns("pd-nlfetch-")
    real = node._load_collector
    monkeypatch.setattr(node, "COLLECTOR_MODULES", ("kernel", "failing", "sysctl"))
    monkeypatch.setattr(node, "_load_collector", lambda name: _Failing if name == "failing" else real(name))
    snap = node.collect_node(netns=ns, node_name="n1", parse=False)
    assert snap.meta["collectors"] == ["kernel", "failing", "sysctl"]
    assert snap.sources["failing"] == "unavailable: collector failed: RuntimeError: boom"
    assert snap.has("kernel.txt") and snap.has("sysctl.txt") and snap.has("half-read.txt")
