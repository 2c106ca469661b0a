"""The interpreter on generated kube-proxy dumps (bench/generate.py): every service port's
endpoints and probabilities match the generated model, also in large-cluster mode where kube-proxy
drops the comments on endpoint rules (service ports then named by the recomputed chain hash)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.model import Endpoint, Packet, ServicePortName
from kubectl_proxydoctor.modes.iptables.parse import parse
from kubectl_proxydoctor.modes.iptables.tracer import Tracer
from kubectl_proxydoctor.modes.iptables.view import interpret_ruleset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import generate  # noqa: E402


def expected(cluster: generate.GenCluster) -> dict[ServicePortName, dict[str, set[Endpoint]]]:
    out = {}
    for svc in cluster.services:
        eps = generate.ready(svc)
        for port in svc.ports:
            name = ServicePortName(svc.namespace, svc.name, port.name, port.protocol)
            all_eps = {Endpoint(e.ip, port.target_port) for e in eps}
            local = {Endpoint(e.ip, port.target_port) for e in eps if e.node == cluster.node}
            out[name] = {"cluster": all_eps, "external": local if svc.external_policy == "Local" else all_eps}
    return out


@pytest.mark.parametrize("services,endpoints,seed", [(60, (1, 8), 1), (400, (1, 12), 2), (150, (1, 100), 3)])
def test_generated_dump_interprets_to_the_model(services: int, endpoints, seed: int) -> None:
    cluster = generate.generate_cluster(services, endpoints, seed=seed)
    text = generate.iptables_save(cluster)
    large = cluster.endpoint_count > generate.LARGE_CLUSTER_ENDPOINTS
    assert ('-> 10.' in text) != large  # comments on endpoint rules only below 1000 endpoints
    view = interpret_ruleset(parse(text), "iptables-nft")
    want = expected(cluster)
    for name, exp in want.items():
        port = view.port(name)
        if not exp["cluster"]:
            assert port is not None and port.frontends[0].no_endpoints == "reject", name
            continue
        assert port is not None, name
        for fe in port.frontends:
            got = {t.endpoint for t in fe.targets}
            if fe.kind == "cluster-ip":
                assert got == exp["cluster"], name
                assert abs(sum(t.probability for t in fe.targets) - 1) < 1e-6
                assert all(abs(t.probability - 1 / len(got)) < 1e-6 for t in fe.targets)
            elif fe.no_endpoints == "drop":
                assert not exp["external"] and got == set(), name
            else:
                assert got == exp["external"], (name, fe.kind)
    assert {n for n, _f in view.ports} == set(want)


def test_trace_on_generated_dump_uses_the_index() -> None:
    cluster = generate.generate_cluster(3000, 3, seed=5)
    rs = parse(generate.iptables_save(cluster))
    tracer = Tracer(rs, {generate.NODE_IP, "127.0.0.1"})
    svc = next(s for s in cluster.services if generate.ready(s) and s.ports[0].protocol == "TCP"
               and s.type == "ClusterIP")
    res = tracer.trace(Packet(svc.cluster_ip, 80, "TCP", "172.16.0.9"))
    want = {Endpoint(e.ip, 8080) for e in generate.ready(svc)}
    assert {o.destination for o in res.outcomes} == want
    # KUBE-SERVICES was indexed: the packet met only its own service rule there
    steps = [s for s in res.outcomes[0].path if s.chain == "nat/KUBE-SERVICES"]
    assert len(steps) == 1 and svc.cluster_ip in steps[0].rule
    assert ("nat", "KUBE-SERVICES") in tracer._index
    nodeport = next(s for s in cluster.services if s.type == "NodePort" and generate.ready(s)
                    and s.external_policy == "Cluster")
    res = tracer.trace(Packet(generate.NODE_IP, nodeport.ports[0].node_port, nodeport.ports[0].protocol,
                              "172.16.0.9"))
    assert {o.destination.ip for o in res.outcomes} == {e.ip for e in generate.ready(nodeport)}
    assert all(o.masquerade for o in res.outcomes)
