"""serve against real kube-proxy iptables rules in a network namespace and the test API server with
watch support. The test changes the API (an endpoint goes away), applies the matching rules into the
namespace after a known delay (as kube-proxy would), and checks: the drift gauge goes up, then back
to 0; the programming latency serve measured matches the injected delay; Events were posted on the
Service and the Node; a change the rules never follow counts as "not yet" after the timeout."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.apiserver import write_kubeconfig
from tests.conftest import ns_run
from tests.serve_helpers import free_port, metric, scrape, wait_for
from tests.watch_apiserver import WatchApiServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import generate  # noqa: E402

pytestmark = pytest.mark.integration
DELAY = 3.0  # seconds between the API change and the rules that follow it


def _restore(ns: str, cluster) -> None:
    ns_run(ns, "iptables-nft-restore", input=generate.iptables_save(cluster))


def _slices(cluster, svc) -> list[dict]:
    return [o for o in generate.api_list(cluster)["items"] if o["kind"] == "EndpointSlice"
            and o["metadata"]["labels"].get("kubernetes.io/service-name") == svc.name
            and o["metadata"]["namespace"] == svc.namespace]


def _pick(cluster, skip=()):
    return next(s for s in cluster.services if s.type == "ClusterIP" and len(generate.ready(s)) >= 3
                and s.affinity_seconds is None and s.name not in skip)


def _drift(port: int) -> float | None:
    status, text = scrape(port)
    if status != 200:
        return None
    values = [metric(text, "proxydoctor_drift_service_ports", kind=k, ip_family="IPv4")
              for k in ("drift", "not-programmed", "not-expected")]
    return None if None in values else sum(values)


def test_latency_and_drift_against_real_rules(netns, tmp_path: Path) -> None:
    ns = netns("pd-srv-")
    cluster = generate.generate_cluster(40, (3, 5), seed=11)
    _restore(ns, cluster)
    server = WatchApiServer.from_api_json(generate.api_list(cluster))
    port = free_port()
    with server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubectl_proxydoctor", "serve", "--netns", ns,
             "--node-name", generate.NODE, "--kubeconfig", str(kubeconfig),
             "--listen", f"127.0.0.1:{port}", "--interval", "30",
             "--grace", "0", "--latency-poll", "0.5", "--latency-timeout", "6"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: _drift(port) == 0, 30, what="a clean first verdict")
            # 1. an endpoint goes away in the API; the rules follow DELAY s later
            svc = _pick(cluster)
            gone = generate.ready(svc)[0]
            changed = copy.deepcopy(cluster)
            target = next(s for s in changed.services if s.name == svc.name)
            target.endpoints = [e for e in target.endpoints if e.ip != gone.ip]
            t_api = time.monotonic()
            for obj in _slices(changed, target):
                server.apply(obj)
            # serve sees the drift while the rules are still the old ones (under load it may take
            # longer than DELAY: then the rules follow only once it did, and the delay is longer)
            wait_for(lambda: (_drift(port) or 0) >= 1, 30, step=0.1, what="the drift gauge going up")
            time.sleep(max(0.0, t_api + DELAY - time.monotonic()))
            t_rules = time.monotonic()
            _restore(ns, changed)
            injected = (t_rules + time.monotonic()) / 2 - t_api
            wait_for(lambda: _drift(port) == 0, 30, what="the drift gauge back to 0")
            text = scrape(port)[1]
            assert metric(text, "proxydoctor_programming_latency_seconds_count") == 1, text
            measured = metric(text, "proxydoctor_programming_latency_seconds_sum")
            assert metric(text, "proxydoctor_programming_pending_changes") == 0
            # 2. a change that needs no new rules is not timed
            svc_obj = server.get("Service", svc.namespace, svc.name)
            svc_obj["metadata"].setdefault("annotations", {})["note"] = "no rule change"
            server.apply(svc_obj)
            time.sleep(2)
            assert metric(scrape(port)[1], "proxydoctor_programming_latency_seconds_count") == 1
            # 3. a change the rules never follow: "not yet" after the timeout
            other = _pick(changed, skip={svc.name})
            stale = copy.deepcopy(changed)
            t2 = next(s for s in stale.services if s.name == other.name)
            t2.endpoints = t2.endpoints[1:]
            for obj in _slices(stale, t2):
                server.apply(obj)
            wait_for(lambda: metric(scrape(port)[1], "proxydoctor_programming_timeouts_total") == 1, 15,
                     what="the change counted as not programmed")
            assert (_drift(port) or 0) >= 1
        finally:
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        events = list(server.events.values())
    assert "Traceback" not in err, err
    m = re.search(rf"programming: MODIFIED EndpointSlice {svc.namespace}/\S+: in the rules after "
                  r"([\d.]+) s \(between ([\d.]+) and ([\d.]+) s\)", err)
    assert m, err
    logged, low, high = (float(x) for x in m.groups())
    print(f"\ninjected delay {injected:.2f} s, measured {measured:.2f} s (bracket {low:.2f}..{high:.2f} s)")
    assert logged == pytest.approx(measured, abs=0.01)
    # the rules changed between the last read that showed the drift and the first that did not
    # (each read is dated at its middle: half a read, ~0.5 s here, is the margin)
    assert low - 1.0 <= injected <= high + 1.0
    assert abs(measured - injected) <= (high - low) / 2 + 1.0
    assert "not yet in the rules after" in err
    reasons = {(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"]) for e in events}
    assert ("Service", svc.name, "KubeProxyDatapathDrift") in reasons
    assert ("Service", svc.name, "KubeProxyDatapathDriftResolved") in reasons
    assert ("Node", generate.NODE, "KubeProxyDatapathDrift") in reasons
    svc_event = next(e for e in events if e["involvedObject"]["name"] == svc.name)
    assert svc_event["involvedObject"]["uid"] and svc_event["source"]["host"] == generate.NODE


def test_ruleset_generation_follows_real_commits(netns) -> None:
    from kubectl_proxydoctor.serve.nftgen import NftGeneration
    from kubectl_proxydoctor.serve.sources import LiveNode

    ns = netns("pd-srvgen-")
    gen = NftGeneration(ns)
    first = gen.read()
    assert first is not None and gen.read() == first
    cluster = generate.generate_cluster(5, 2, seed=3)
    _restore(ns, cluster)
    assert gen.read() > first  # iptables-nft commits through nf_tables
    node = LiveNode(netns=ns, node_name=generate.NODE)
    assert node.changed()  # nothing read yet
    node.read()
    assert node.last_read_stable and not node.changed()
    _restore(ns, cluster)  # the same rules, committed again: a new generation
    assert node.changed()
    node.read()
    assert not node.changed()
    ns_run(ns, "nft", "add", "table", "inet", "other")
    assert node.changed()
