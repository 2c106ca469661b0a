"""`migrate-check` in large-cluster mode and on a node already in the target mode (issue 16 item 3)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli import main
from kubectl_proxydoctor.migrate.engine import check_readiness
from kubectl_proxydoctor.migrate.third_party import foreign_rules
from kubectl_proxydoctor.modes.iptables.parse import parse
from tests.test_migrate_helpers import FIX, cluster, snapshot

sys.path.insert(0, str(Path(__file__).parents[1]))
from bench.generate import LARGE_CLUSTER_ENDPOINTS, generate_cluster, iptables_save  # noqa: E402


@pytest.fixture(scope="module")
def large_dump() -> str:
    """kube-proxy v1.30's iptables layout above 1000 endpoints: endpoint rules without comments."""
    generated = generate_cluster(services=120, endpoints=10, seed=1)
    assert generated.endpoint_count > LARGE_CLUSTER_ENDPOINTS
    text = iptables_save(generated)
    seps = [line for line in text.splitlines() if line.startswith("-A KUBE-SEP-")]
    assert seps and not [line for line in seps if "--comment" in line]
    return text


def test_large_cluster_endpoint_rules_are_recognised_by_chain_hash(large_dump):
    ruleset = parse(large_dump, "iptables-nft-save.txt")
    seps = [r for r in ruleset.tables["nat"].rules() if r.chain.startswith("KUBE-SEP-")]
    assert len(seps) > 2000 and all(r.comment is None for r in seps)
    assert foreign_rules(ruleset) == []


def test_a_foreign_rule_in_a_large_cluster_endpoint_chain_is_still_named(large_dump):
    sep = next(line.split()[1] for line in large_dump.splitlines() if line.startswith("-A KUBE-SEP-"))
    text = large_dump.replace(f"-A {sep} ", f"-A {sep} -s 192.0.2.7/32 -j ACCEPT\n-A {sep} ", 1)
    found = foreign_rules(parse(text, "iptables-nft-save.txt"))
    assert [(how, rule.text) for how, rule in found] == [
        (f"inserted into {sep}", f"-A {sep} -s 192.0.2.7/32 -j ACCEPT")]


def test_migrate_check_on_a_large_cluster_capture_is_not_blocked_by_kube_proxys_own_rules(large_dump):
    snap = snapshot("iptables/healthy", {"iptables-nft-save.txt": large_dump, "iptables-save.txt": large_dump,
                                         "iptables-legacy-save.txt": None})
    readiness = check_readiness("nftables", cluster("iptables/healthy"), [snap])
    (third,) = [r for r in readiness.results if r.check == "third-party-rules"]
    assert third.status == "pass", third.summary


def test_node_already_in_nftables_mode_says_so_without_a_plan(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate-check", "nftables", "--from", str(FIX / "nftables" / "after-switch-from-iptables"),
              "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 0
    assert doc["verdict"] == "already"
    assert doc["plan"] == {"config": [], "rollout": [], "rollback": [], "watch": []}
    assert not any("set mode back to nftables" in line for line in doc["plan"]["rollback"])
    (left,) = [c for c in doc["checks"] if c["check"] == "old-mode-leftovers"]
    assert left["status"] == "warn" and "KUBE-MARK-MASQ" in left["summary"]
    assert "iptables-nft -t filter -X KUBE-FIREWALL" not in left["action"].replace("ip6tables", "-")
    assert "iptables: KUBE-FIREWALL is kept" in left["action"]


def test_already_verdict_in_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate-check", "nftables", "--from", str(FIX / "nftables" / "healthy")])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "ALREADY in nftables mode" in out and "READY to switch" not in out
    assert "\nPlan\n" not in out and "set mode back" not in out


def test_rollback_never_names_the_target_mode():
    """Config already says nftables, the node still runs iptables (not restarted yet)."""
    readiness = check_readiness("nftables", cluster("nftables/healthy"), [snapshot("iptables/healthy")])
    assert readiness.verdict != "already"
    assert readiness.plan.rollback and not any("back to nftables" in r for r in readiness.plan.rollback)
    assert any("set mode back to iptables" in r for r in readiness.plan.rollback)
