"""Generated kube-proxy rules loaded into a real kernel (a throwaway pd-ipt- network namespace),
printed back by the real iptables-save, interpreted and traced: equal to the generated model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kubectl_proxydoctor.model import Endpoint, Packet
from kubectl_proxydoctor.modes.iptables.parse import parse
from kubectl_proxydoctor.modes.iptables.tracer import Tracer
from kubectl_proxydoctor.modes.iptables.view import interpret_ruleset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import generate  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables-nft-save") is None,
        reason="needs root, iproute2 and iptables",
    ),
]


@pytest.fixture
def netns():
    name = f"pd-ipt-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_kernel_round_trip(netns: str, backend: str) -> None:
    cluster = generate.generate_cluster(120, (1, 6), seed=7)
    text = generate.iptables_save(cluster)
    done = subprocess.run(
        ["ip", "netns", "exec", netns, f"iptables-{backend}-restore"],
        input=text,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and backend == "legacy" and "Table does not exist" in done.stderr:
        pytest.skip("kernel without x_tables nat")
    assert done.returncode == 0, done.stderr
    saved = subprocess.run(
        ["ip", "netns", "exec", netns, f"iptables-{backend}-save"], capture_output=True, text=True, check=True
    ).stdout
    rs = parse(saved, source=f"iptables-{backend}-save")
    assert rs.backend == ("nf_tables" if backend == "nft" else "legacy")
    view = interpret_ruleset(rs, f"iptables-{backend}")
    for svc in cluster.services:
        eps = generate.ready(svc)
        for port in svc.ports:
            got = next(
                (
                    p
                    for (n, _f), p in view.ports.items()
                    if (n.namespace, n.name, n.port, n.protocol)
                    == (svc.namespace, svc.name, port.name, port.protocol)
                ),
                None,
            )
            assert got is not None
            want = {Endpoint(e.ip, port.target_port) for e in eps}
            cluster_ip = next(f for f in got.frontends if f.kind == "cluster-ip")
            assert {t.endpoint for t in cluster_ip.targets} == want
            if want:
                assert abs(sum(t.probability for t in cluster_ip.targets) - 1) < 1e-6
            else:
                assert cluster_ip.no_endpoints == "reject"
    svc = next(s for s in cluster.services if generate.ready(s) and s.type == "ClusterIP")
    res = Tracer(rs, {generate.NODE_IP}).trace(
        Packet(svc.cluster_ip, svc.ports[0].port, svc.ports[0].protocol, "172.16.0.9")
    )
    assert {o.destination.ip for o in res.outcomes} == {e.ip for e in generate.ready(svc)}
