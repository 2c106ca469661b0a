"""`svc` stays short at any size and traces each frontend from the sources that matter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import generate  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


def run(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, _ = capsys.readouterr()
    return int(exc.value.code or 0), out


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory) -> Path:
    """A LoadBalancer with 1,000 endpoints (source ranges, eTP Local, affinity) and one ClusterIP."""
    cluster = generate.generate_cluster(2, 3, seed=3, lb_share=0, nodeport_share=0, empty_share=0,
                                        udp_share=0, affinity_share=0)
    big = cluster.services[0]
    big.name, big.type = "big", "LoadBalancer"
    big.lb_ips, big.source_ranges = ["203.0.113.50"], ["172.16.0.0/12"]
    big.external_policy, big.affinity_seconds = "Local", 10800
    big.ports[0].node_port = 30500
    base = 10 << 24 | 200 << 16
    big.endpoints = [generate.GenEndpoint(f"10.200.{(base + i) >> 8 & 255}.{(base + i) & 255}",
                                          generate.NODE if i % 4 == 0 else f"bench-node-{2 + i % 5}")
                     for i in range(1000)]
    return generate.write_capture(cluster, tmp_path_factory.mktemp("big"))


def test_1000_endpoint_service_under_400_lines(capsys, big_capture: Path) -> None:
    code, out = run(capsys, "svc", "big", "-n", "ns-0", "--from", str(big_capture))
    lines = out.splitlines()
    out = " ".join(out.split())  # the console wraps long lines
    assert code == 0, out
    assert len(lines) < 400, len(lines)
    assert "loadBalancerSourceRanges 172.16.0.0/12" in out
    assert "externalTrafficPolicy Local" in out and "sessionAffinity ClientIP (10800s)" in out
    assert "API ns-0/big:http/TCP (IPv4): 1000 endpoints" in out
    assert "DNAT to 1000 endpoints" in out  # cluster IP: every endpoint, counted in the fate line
    assert "DNAT to 250 endpoints" in out  # eTP Local from outside: the 250 on this node
    assert "inside loadBalancerSourceRanges (172.16.0.1)" in out
    assert "outside loadBalancerSourceRanges" in out and "DROP: the client times out" in out
    # --all still prints everything
    code, full = run(capsys, "svc", "big", "-n", "ns-0", "--from", str(big_capture), "--all")
    assert len(full.splitlines()) > 5 * len(lines)


def test_lb_with_source_ranges_shows_allowed_and_dropped_source(capsys) -> None:
    code, out = run(capsys, "svc", "lb", "--from", str(FIXTURES / "iptables/healthy"))
    assert code == 0
    out = out.replace("\n    ", " ")
    assert "loadBalancerSourceRanges 172.30.0.0/24" in out
    blocks = out.split("\ntrace ")
    inside = next(b for b in blocks if b.startswith("203.0.113.10:80/tcp from a client inside"))
    outside = next(b for b in blocks if b.startswith("203.0.113.10:80/tcp from a client outside"))
    assert "(172.30.0.2)" in inside and "fate: DNAT to 2 endpoints" in inside
    assert "fate: DROP: the client times out" in outside


def test_shared_rules_printed_once(capsys) -> None:
    code, out = run(capsys, "svc", "web", "--from", str(FIXTURES / "iptables/healthy"))
    assert code == 0
    snat = 'KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT"'
    assert out.count(snat) <= 2
    assert "then, for every outcome" in out


def test_svc_with_rules_unknown_says_so_and_shows_the_root_cause(tmp_path) -> None:
    """Rules not captured: svc shows the API's settings, 'programmed: unknown' (never 'no rules') and
    the rules-unknown finding, and exits 3."""
    import shutil
    import subprocess
    import sys

    capture = tmp_path / "node"
    shutil.copytree(Path(__file__).parent / "fixtures" / "iptables" / "healthy", capture)
    for dump in [*capture.glob("ip*tables*-save.txt"), *capture.glob("nft-ruleset.*")]:
        dump.unlink()
    res = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "svc", "web", "--from", str(capture)],
                         capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
                         cwd=Path(__file__).parents[1])
    assert res.returncode == 3, res.stderr
    assert "programmed: unknown" in res.stdout and "no rules for this service" not in res.stdout
    assert "rules-unknown" in res.stdout and "type ClusterIP" in res.stdout
