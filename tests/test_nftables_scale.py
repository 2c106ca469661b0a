"""Issue 19: nftables reads that scale (time limits by table size, progress, the netlink table
list) and the generator's newest kube-proxy layout read back by the real collector."""

from __future__ import annotations

import io
import subprocess
import time

import pytest

from bench.gen_nftables import expected_ports, nft_script
from bench.generate import generate_cluster
from kubectl_proxydoctor.collect import nft_netlink, nft_watch
from kubectl_proxydoctor.collect import nftables as nftcollect
from kubectl_proxydoctor.modes.nftables.interpreter import interpret_ruleset
from kubectl_proxydoctor.modes.nftables.layout import generation


def _load(ns: str, script: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[:2000]


def _ruleset_text(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True,
                          text=True, check=True).stdout


def test_time_limit_grows_with_the_table():
    small, big, huge = (nft_watch.time_limit(n) for n in (100, 114_000, 400_000))
    assert small == pytest.approx(60.05, abs=0.1)
    # the 10k x 10 node (114k chains) listed in 25-55 s here: a few times that is allowed
    assert 200 < big < 300
    assert huge > 4 * big  # the kernel's dump grows with the square of the table
    assert nft_watch.time_limit(None) == nft_watch.UNKNOWN_SIZE_LIMIT


def test_watch_reports_progress_and_stops_a_listing_at_its_limit():
    out = io.StringIO()
    stopped = []
    read = [0]
    watch = nft_watch.Watch("list table ip kube-proxy", lambda: read[0], lambda: 1234, out=out, every=0.05,
                            limit=lambda chains: 0.3 if chains == 1234 else 99.0)
    watch.on_expiry(lambda: stopped.append(time.monotonic()))
    with watch:
        time.sleep(0.12)
        read[0] = 41_000_000
        time.sleep(0.5)
    lines = out.getvalue().splitlines()
    assert "nothing printed yet" in lines[0] and "(1,234 chains)" in lines[0]
    assert any("41 MB read so far" in line for line in lines)
    assert lines[-1] == ("proxydoctor: `nft list table ip kube-proxy` outlived the 0 s allowed for 1234 "
                         "chains: stopping it")
    assert len(stopped) == 1 and watch.expired


def test_a_quick_listing_prints_nothing():
    out = io.StringIO()
    with nft_watch.Watch("list chains", lambda: 0, lambda: None, out=out):
        pass
    assert out.getvalue() == ""


def test_the_nft_binary_is_stopped_at_the_limit_its_table_size_gives(netns, monkeypatch):
    """A listing that outlives the limit for its table's size (here made tiny) is stopped and the
    source is unavailable, saying why; with the real limit the same listing is read."""
    ns = netns("pd-nft-")
    _load(ns, nft_script(generate_cluster(300, 10, seed=2)))
    runner = nftcollect.cli_runner(ns)
    text, ruleset = nftcollect.read_tables(runner)
    assert ruleset is not None and len(ruleset.tables[("ip", "kube-proxy")].chains) > 3000
    monkeypatch.setattr(nft_watch, "time_limit", lambda chains: 0.01 if chains else 600.0)
    monkeypatch.setattr(nftcollect, "Watch", lambda *a: nft_watch.Watch(*a, every=0.005,
                                                                        limit=nft_watch.time_limit))
    sizes = nftcollect.Sizes()
    sizes.chains = {("ip", "kube-proxy"): 3000}
    with pytest.raises(nftcollect._Unavailable, match=r"did not finish in the 0 s allowed for 3000 chains"):
        nftcollect.list_with(runner, "list table ip kube-proxy", True, sizes=sizes)


def test_discovery_counts_each_tables_chains():
    out = ("table ip kube-proxy {\n\tchain a {\n\t}\n\tchain b {\n\t\ttype nat hook output priority -100; "
           "policy accept;\n\t}\n}\ntable inet fw {\n\tchain input {\n\t\ttype filter hook input priority 0; "
           "policy accept;\n\t}\n}\n")
    sizes = nftcollect.Sizes()
    present, hooked = nftcollect._tables(out, sizes)
    assert present == [("ip", "kube-proxy"), ("inet", "fw")]
    assert sizes.chains == {("ip", "kube-proxy"): 2, ("inet", "fw"): 1}
    assert sizes.chains_of("list table inet fw")() == 1
    assert sizes.chains_of("list chains")() is None


def test_netlink_table_list_is_nfts_and_reads_only(netns):
    ns = netns("pd-nft-")
    assert nft_netlink.list_tables(ns) == []
    _load(ns, "add table ip kube-proxy\nadd table ip6 kube-proxy\nadd table inet fw\nadd table ip nat\n"
              "add table netdev edge\n")
    before = _ruleset_text(ns)
    listed = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True,
                            text=True, check=True).stdout
    ours = nft_netlink.list_tables(ns)
    assert [f"table {f} {n}" for f, n in ours] == listed.splitlines()
    assert _ruleset_text(ns) == before


def test_netlink_requests_are_dumps_of_get_messages_only():
    with pytest.raises(ValueError, match="only reads"):
        nft_netlink.read_only_request(0, 2, 1)  # NFT_MSG_NEWTABLE
    request = nft_netlink.read_only_request(nft_netlink.NFT_MSG_GETTABLE, 0, 1)
    length, msg_type, flags, _seq, _pid = nft_netlink._HEADER.unpack_from(request)
    assert (length, msg_type, flags) == (len(request), 10 << 8 | 1, 0x301)


def test_netlink_in_a_namespace_that_does_not_exist_is_an_error():
    with pytest.raises(OSError):
        nft_netlink.list_tables("pd-nft-no-such-namespace")


@pytest.mark.parametrize("layout", ["v1.30", "v1.36"])
def test_generated_layouts_read_back_with_every_endpoint(netns, layout):
    """The bench generator's two layouts, loaded for real and collected: the interpreter finds the
    generation and exactly the generated endpoints of every service port."""
    ns = netns("pd-nft-")
    cluster = generate_cluster(150, (0, 6), seed=3, lb_share=0.2, nodeport_share=0.3, affinity_share=0.2)
    _load(ns, nft_script(cluster, layout))
    _text, ruleset = nftcollect.read_tables(nftcollect.cli_runner(ns))
    assert ruleset is not None
    gen = generation(ruleset.tables[("ip", "kube-proxy")])
    assert gen is not None and gen.name == {"v1.30": "v1.29-v1.33", "v1.36": "v1.36+"}[layout]
    view = interpret_ruleset(ruleset)[0]
    got = {name.key: sorted(str(e) for e in port.endpoints) for (name, _family), port in view.ports.items()}
    expected = {k: sorted(v) for k, v in expected_ports(cluster).items()}
    assert got == expected


def test_without_net_admin_the_table_list_is_unavailable_needing_root():
    """Root with CAP_NET_ADMIN dropped (setpriv): the kernel refuses the netlink dump, and the
    iptables collector says the table list needs root, not "no tables"."""
    import shutil
    import sys

    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    code = ("from kubectl_proxydoctor.collect import CollectContext\n"
            "from kubectl_proxydoctor.collect.iptables import _nft_tables\n"
            "ctx = CollectContext()\n"
            "print(_nft_tables(ctx), ctx.sources['nft list tables'])\n")
    done = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", sys.executable,
                           "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ("None unavailable: needs root (CAP_NET_ADMIN): nftables netlink dump: "
                                   "Operation not permitted")


def test_a_finished_discovery_sizes_the_listing_running_beside_it():
    """With libnftables, discovery runs in an nft process alongside the big listing: its chain
    counts reach the listing's limit and progress as soon as it is done, a failed one gives none."""
    from concurrent.futures import Future

    done: Future = Future()
    listing = nftcollect.Listing("list chains")
    listing.feed("table ip kube-proxy {\n\tchain a {\n\t}\n\tchain b {\n\t}\n}\n")
    done.set_result(listing)
    sizes = nftcollect.Sizes()
    nftcollect._count_chains(done, sizes)
    assert sizes.chains_of("list table ip kube-proxy")() == 2
    failed: Future = Future()
    failed.set_result(nftcollect.Listing("list chains", rc=1, err="Error: boom"))
    other = nftcollect.Sizes()
    nftcollect._count_chains(failed, other)
    assert other.chains is None
