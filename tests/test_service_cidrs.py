"""ServiceCIDRs: read from the API (unknown when not served or not captured) and compared with the
CIDRs kube-proxy's nftables rules drop unallocated ClusterIPs in (kube-proxy's own expected rulesets
drop 172.30.0.0/16, the test's service CIDR)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.collect.api import read_cluster
from kubectl_proxydoctor.modes.nftables.interpreter import load_ruleset
from kubectl_proxydoctor.modes.nftables.service_cidrs import dropped_cidrs
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.apiserver import FakeApiServer, status, write_kubeconfig

UPSTREAM = Path(__file__).parent / "fixtures" / "upstream" / "nftables"
GENERATIONS = sorted(p for p in UPSTREAM.iterdir() if (p / "nft-ruleset.json").is_file())


def _service_cidr(name: str, *cidrs: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": name},
            "spec": {"cidrs": list(cidrs)}}


def _report(fixture: Path, *servicecidrs: dict):
    api = copy.deepcopy(json.loads((fixture / "api.json").read_text()))
    api["items"] += list(servicecidrs)
    return analyse(NodeSnapshot.load(fixture), ClusterState.from_list(api))


def _mismatches(report) -> list:
    return [f for f in report.findings if f.code == "service-cidr-mismatch"]


@pytest.mark.parametrize("fixture", GENERATIONS, ids=lambda p: p.name)
def test_rules_read_the_drop_of_unallocated_cluster_ips(fixture: Path) -> None:
    ruleset = load_ruleset(NodeSnapshot.load(fixture))
    table = ruleset.table("ip", "kube-proxy") if ruleset is not None else None
    assert table is not None
    dropped = dropped_cidrs(table)
    assert dropped is not None and dropped.cidrs == ["172.30.0.0/16"]
    assert dropped.rules == ['ip daddr 172.30.0.0/16 drop comment "Drop traffic to unallocated ClusterIPs"']


@pytest.mark.parametrize("fixture", GENERATIONS, ids=lambda p: p.name)
def test_matching_or_unknown_service_cidrs_are_no_finding(fixture: Path) -> None:
    assert _mismatches(_report(fixture)) == []  # not in api.json: unknown, not "none"
    dual = _service_cidr("kubernetes", "172.30.0.0/16", "fd00:10:96::/112")  # ip6: the ip6 table's
    assert _mismatches(_report(fixture, dual)) == []
    # compared as networks (host bits set still name the same network)
    assert _mismatches(_report(fixture, _service_cidr("kubernetes", "172.30.0.1/16"))) == []


@pytest.mark.parametrize("fixture", GENERATIONS, ids=lambda p: p.name)
def test_a_service_cidr_kube_proxy_did_not_apply_is_a_warning(fixture: Path) -> None:
    report = _report(fixture, _service_cidr("kubernetes", "172.30.0.0/16"),
                     _service_cidr("extra", "10.100.0.0/16"))
    [finding] = _mismatches(report)
    assert finding.severity == "warning" and finding.service is None
    assert "10.100.0.0/16 is not dropped" in finding.message
    assert finding.evidence[0].startswith("ip daddr 172.30.0.0/16 drop")
    assert "kubectl -n kube-system delete" in finding.fix
    assert [f.code for f in report.findings if f.severity == "error"] == []

    [finding] = _mismatches(_report(fixture, _service_cidr("kubernetes", "10.100.0.0/16")))
    assert "every address of 172.30.0.0/16" in finding.message
    assert "10.100.0.0/16 is not dropped" in finding.message


def test_service_cidrs_of_a_list() -> None:
    assert ClusterState.from_list({"items": []}).service_cidrs() is None
    state = ClusterState.from_list({"items": [_service_cidr("a", "10.96.0.0/12", "fd00::/108"),
                                              _service_cidr("b", "10.96.0.0/12")]})
    assert state.service_cidrs() == ["10.96.0.0/12", "fd00::/108"]
    assert any(i["kind"] == "ServiceCIDR" for i in state.to_list()["items"])


class _ServiceCidrServer(FakeApiServer):
    """Serves networking.k8s.io/v1 servicecidrs (the base server answers 404, like an API < 1.33)."""

    answer: tuple[int, dict] = (200, {"kind": "ServiceCIDRList", "apiVersion": "networking.k8s.io/v1",
                                      "metadata": {}, "items": [_service_cidr("kubernetes", "10.96.0.0/12")]})

    def handle(self, method, raw_path, authorization):
        if raw_path.startswith("/apis/networking.k8s.io/v1/servicecidrs"):
            self.requests.append((method, raw_path.split("?")[0], {}))
            return self.answer
        return super().handle(method, raw_path, authorization)


def test_live_read_of_service_cidrs(tmp_path: Path) -> None:
    with FakeApiServer([]) as server:  # not served: unknown, and no failure in the sources
        state = read_cluster(kubeconfig=str(write_kubeconfig(tmp_path / "a", {"x": server.url})))
    assert state.service_cidrs() is None and "list servicecidrs" not in state.sources
    served = _ServiceCidrServer([])
    with served:
        state = read_cluster(kubeconfig=str(write_kubeconfig(tmp_path / "b", {"x": served.url})))
        assert state.service_cidrs() == ["10.96.0.0/12"] and state.sources["list servicecidrs"] == "ok"
        assert state.servicecidrs[0]["kind"] == "ServiceCIDR"
        served.answer = (403, status(403, "Forbidden", 'servicecidrs.networking.k8s.io is forbidden: User '
                                                       '"x" cannot list resource "servicecidrs"'))
        state = read_cluster(kubeconfig=str(write_kubeconfig(tmp_path / "c", {"x": served.url})))
    assert state.service_cidrs() is None
    assert state.sources["list servicecidrs"].startswith("forbidden")


def _without_drop_rule(tmp_path: Path, version: str | None) -> Path:
    import shutil

    capture = tmp_path / "cap"
    shutil.copytree(UPSTREAM / "master", capture)
    doc = json.loads((capture / "nft-ruleset.json").read_text())
    doc["nftables"] = [o for o in doc["nftables"]
                       if (o.get("rule") or {}).get("comment") != "Drop traffic to unallocated ClusterIPs"]
    (capture / "nft-ruleset.json").write_text(json.dumps(doc))
    (capture / "nft-ruleset.txt").unlink(missing_ok=True)
    if version:
        metric = f'kubernetes_build_info{{git_version="{version}"}} 1\n'
        (capture / "kube-proxy-metrics.txt").write_text(metric)
    return capture


def test_no_drop_rule_is_a_warning_only_for_a_kube_proxy_that_watches_service_cidrs(tmp_path: Path) -> None:
    cidr = _service_cidr("kubernetes", "172.30.0.0/16")
    [finding] = _mismatches(_report(_without_drop_rule(tmp_path / "a", "v1.34.1"), cidr))
    assert "has no drop of unallocated ClusterIPs" in finding.message and "v1.34.1" in finding.message
    assert finding.evidence[0] == "chain cluster-ips-check has no drop rule"
    # before 1.33 kube-proxy watches ServiceCIDRs only behind a feature gate; unknown version: no claim
    assert _mismatches(_report(_without_drop_rule(tmp_path / "b", "v1.32.4"), cidr)) == []
    assert _mismatches(_report(_without_drop_rule(tmp_path / "c", None), cidr)) == []
