"""Benchmark: `check` end to end on a generated 10k-service node, against iptables-save's own time.

Generates API objects (Services, EndpointSlices, the Node) and the matching kube-proxy v1.30
iptables rules (bench/generate.py when present, else the built-in generator below, which writes
kube-proxy's large-cluster layout: no comments on endpoint rules above 1000 endpoints), runs
``kubectl-proxydoctor check --from DIR -o json`` as a child process (wall time, peak RSS; the
package's bytecode compiled first, as an installed tool has it), and, as root, loads the same rules
into a throwaway network namespace (pd-bench-*) to time ``iptables-save`` there. Both are timed
the same way: the best of ``--repeat`` runs. Nothing touches the host's own rules.

    .venv/bin/python bench/bench_check.py [--services 10000] [--endpoints 3] [--drift 10]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE = "bench-node"


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def _pod_ip(index: int) -> str:
    n = index + 1
    return f"10.{64 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def _prob(n: int) -> str:
    return f"{1.0 / n:.11f}"


def generate_shared(
    directory: Path, services: int, endpoints: int, drift: int, seed: int = 1
) -> dict[str, int]:
    """The same node from bench/generate.py (NodePorts, LBs, Local policy, affinity, UDP, not-ready
    endpoints): rules first, then ``drift`` ClusterIP services lose a ready endpoint in the API."""
    sys.path.insert(0, str(ROOT))
    from bench.generate import generate_cluster, iptables_save, ready, write_capture

    cluster = generate_cluster(services, endpoints, seed=seed)
    text = iptables_save(cluster)
    changed = 0
    for svc in cluster.services:
        if changed >= drift:
            break
        live = ready(svc)
        if (
            svc.type == "ClusterIP"
            and svc.internal_policy == "Cluster"
            and len(svc.ports) == 1
            and len(live) > 1
        ):
            svc.endpoints.remove(live[0])
            changed += 1
    write_capture(cluster, directory, iptables_text=text)
    return {
        "services": services,
        "endpoints": cluster.endpoint_count,
        "rules": text.count("\n-A "),
        "drifted": changed,
    }


def generate(directory: Path, services: int, endpoints: int, drift: int) -> dict[str, int]:
    """Built-in generator (ClusterIP services only): api.json, iptables-save.txt and meta.json;
    ``drift`` services lose an endpoint in the API after the rules were written."""
    items: list[dict] = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {}},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.30.0.1"}]},
        }
    ]
    svc_chains, sep_chains, services_rules, svc_rules, sep_rules = [], [], [], [], []
    total_eps = services * endpoints
    large = total_eps > 1000
    for i in range(services):
        ns, name = f"ns{i % 50}", f"svc{i}"
        cip = f"10.96.{i // 250}.{i % 250 + 1}"
        pname = f"{ns}/{name}:http"
        eps = [_pod_ip(i * endpoints + k) for k in range(endpoints)]
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": cip,
                    "clusterIPs": [cip],
                    "ipFamilies": ["IPv4"],
                    "internalTrafficPolicy": "Cluster",
                    "sessionAffinity": "None",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                },
                "status": {"loadBalancer": {}},
            }
        )
        api_eps = eps[1:] if i < drift else eps
        items.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "addressType": "IPv4",
                "metadata": {
                    "name": f"{name}-abc",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [ip],
                        "nodeName": NODE if k % 2 == 0 else "other",
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                    }
                    for k, ip in enumerate(api_eps)
                ],
            }
        )
        svc = "KUBE-SVC-" + _hash(pname + "tcp")
        svc_chains.append(svc)
        services_rules.append(
            f'-A KUBE-SERVICES -d {cip}/32 -p tcp -m comment --comment "{pname} cluster IP" '
            f"-m tcp --dport 80 -j {svc}"
        )
        svc_rules.append(
            f'-A {svc} ! -s 10.64.0.0/10 -d {cip}/32 -p tcp -m comment --comment "{pname} cluster IP" '
            f"-m tcp --dport 80 -j KUBE-MARK-MASQ"
        )
        for k, ip in enumerate(eps):
            sep = "KUBE-SEP-" + _hash(pname + "tcp" + f"{ip}:8080")
            sep_chains.append(sep)
            comment = "" if large else f'-m comment --comment "{pname} -> {ip}:8080" '
            stat = (
                f"-m statistic --mode random --probability {_prob(endpoints - k)} "
                if k < endpoints - 1
                else ""
            )
            svc_rules.append(f"-A {svc} {comment}{stat}-j {sep}")
            c2 = "" if large else f'-m comment --comment "{pname}" '
            sep_rules.append(f"-A {sep} -s {ip}/32 {c2}-j KUBE-MARK-MASQ")
            sep_rules.append(f"-A {sep} -p tcp {c2}-m tcp -j DNAT --to-destination {ip}:8080")
    nat = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-MARK-MASQ - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-POSTROUTING - [0:0]",
        ":KUBE-PROXY-CANARY - [0:0]",
        ":KUBE-SERVICES - [0:0]",
    ]
    nat += [f":{c} - [0:0]" for c in svc_chains + sep_chains]
    nat += [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    nat += services_rules
    nat.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
        'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    nat += svc_rules + sep_rules + ["COMMIT"]
    filt = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":KUBE-EXTERNAL-SERVICES - [0:0]",
        ":KUBE-FORWARD - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-PROXY-CANARY - [0:0]",
        ":KUBE-PROXY-FIREWALL - [0:0]",
        ":KUBE-SERVICES - [0:0]",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 '
        "-j ACCEPT",
        "COMMIT",
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "iptables-save.txt").write_text("\n".join(filt + nat) + "\n")
    (directory / "api.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    (directory / "meta.json").write_text(json.dumps({"node": NODE}))
    return {"services": services, "endpoints": total_eps, "rules": len(nat) + len(filt)}


def compile_bytecode() -> None:
    """Compile the package's bytecode (into its __pycache__ directories, which git ignores), as an
    installed tool has it: a checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile
    every module on each run (about 0.1 s). (Not PYTHONPYCACHEPREFIX: Python would then look for
    every library's bytecode there too, and compile those on each run instead.)"""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "kubectl_proxydoctor")], check=True,
                   capture_output=True)


def run_check(directory: Path) -> tuple[float, float, int, int, dict]:
    """(wall seconds, CPU seconds, peak RSS in KiB, exit code, report) of `check --from DIR -o json`."""
    cmd = [sys.executable, "-m", "kubectl_proxydoctor", "check", "--from", str(directory), "-o", "json"]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"check failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss, proc.returncode, json.loads(text)


def phases(directory: Path) -> dict[str, float]:
    """CPU seconds of each step of the analysis, in this process (GC paused as the CLI does)."""
    import gc

    sys.path.insert(0, str(ROOT))
    from kubectl_proxydoctor.analysis import decide_mode, interpret_views, split_views
    from kubectl_proxydoctor.checks.drift_compare import Comparison
    from kubectl_proxydoctor.cluster import ClusterState
    from kubectl_proxydoctor.expected import expected_for_node
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    gc.disable()
    out: dict[str, float] = {}
    clock = time.process_time
    start = clock()
    snapshot = NodeSnapshot.load(directory)
    cluster = ClusterState.from_json_text(snapshot.text("api.json") or "")
    out["load capture + api.json"] = clock() - start
    start = clock()
    views, _ = interpret_views(snapshot)
    out["interpret rules (all modes)"] = clock() - start
    start = clock()
    decide_mode(snapshot, cluster, views)
    out["decide proxy mode (proxy_mode.decide)"] = clock() - start
    start = clock()
    expected = expected_for_node(cluster, snapshot.node)
    out["expected (API -> node)"] = clock() - start
    start = clock()
    primary, _ = split_views(views, "iptables")
    Comparison(expected, "iptables", primary).run()
    out["drift comparison"] = clock() - start
    gc.enable()
    return {k: round(v, 2) for k, v in out.items()}


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process, its output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def time_iptables_save(directory: Path, repeat: int = 3) -> tuple[float, float] | None:
    """Best-of (wall, CPU) seconds of `iptables-save` on the same rules in a throwaway netns (root)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables-restore"):
        return None
    ns = f"pd-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        dump = directory / "iptables-save.txt"
        if not dump.exists():
            dump = directory / "iptables-nft-save.txt"
        with open(dump, "rb") as rules:
            subprocess.run(
                ["ip", "netns", "exec", ns, "iptables-restore"], stdin=rules, check=True, capture_output=True
            )
        runs = [_timed(["ip", "netns", "exec", ns, "iptables-save"]) for _ in range(repeat)]
        return min(r[0] for r in runs), min(r[1] for r in runs)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--drift", type=int, default=10, help="services whose API lost an endpoint")
    parser.add_argument("--keep", type=Path, help="write the generated node here and keep it")
    parser.add_argument("--builtin", action="store_true", help="the built-in ClusterIP-only generator")
    parser.add_argument("--repeat", type=int, default=3, help="runs of check and of iptables-save (best)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pd-bench-check-"))
    directory = args.keep or tmp / "node"
    try:
        if args.builtin:
            sizes = generate(directory, args.services, args.endpoints, args.drift)
        else:
            sizes = generate_shared(directory, args.services, args.endpoints, args.drift)
        # the same statistic on both sides: the best of ``repeat`` runs (this machine is noisy)
        compile_bytecode()
        runs = [run_check(directory) for _ in range(args.repeat)]
        seconds, cpu, rss_kib, code, report = min(runs, key=lambda r: r[0])
        save = time_iptables_save(directory, args.repeat)
        steps = phases(directory)
        stale = sum(1 for f in report["findings"] if f["code"] == "stale-endpoint")
        result = {
            **sizes,
            "check_seconds": round(seconds, 2),
            "check_seconds_all_runs": [round(r[0], 2) for r in runs],
            "check_cpu_seconds": round(cpu, 2),
            "check_peak_rss_mib": round(rss_kib / 1024, 1),
            "exit_code": code,
            "stale_endpoint_findings": stale,
            "statuses_ok": sum(1 for s in report["services"] if s["status"] == "ok"),
            "iptables_save_seconds": round(save[0], 3) if save else None,
            "iptables_save_cpu_seconds": round(save[1], 3) if save else None,
            "ratio_vs_iptables_save": round(seconds / save[0], 2) if save else None,
            "cpu_ratio_vs_iptables_save": round(cpu / save[1], 2) if save and save[1] else None,
            "cpu_seconds_by_step": steps,
        }
        print(json.dumps(result, indent=1))
        drifted = sizes.get("drifted", args.drift)
        errors = [f for f in report["findings"] if f["severity"] == "error" and f["code"] != "stale-endpoint"]
        if stale != drifted or errors or code != (1 if drifted else 0):
            raise SystemExit(
                f"wrong diagnosis: {stale} stale endpoints for {drifted} drifted services, "
                f"other errors: {[f['code'] for f in errors][:5]}"
            )
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
