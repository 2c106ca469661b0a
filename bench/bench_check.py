"""Benchmark: `check` end to end on generated nodes, against both iptables backends' dump commands.

For each case (default 10k services x 10 endpoints, 10k x 3 and 1k x 10; NodePorts, LBs, Local
policy, affinity from bench/generate.py, or ``--builtin``: ClusterIP only) it writes a capture,
loads the same rules into throwaway network namespaces (pd-ipt-*, bench/saves.py) and times, side
by side in each round: ``iptables-legacy-save``, ``iptables-nft-save``, then
``kubectl-proxydoctor check --from DIR -o json`` and ``status`` / ``svc`` / ``trace`` as child
processes (wall, CPU, peak RSS; bytecode compiled first, as an installed tool has it). Every figure
is the best of ``--repeat`` rounds, and every ratio is against both save commands. Also ``--help``
(with bytecode) and the CPU seconds of each analysis step in-process. Target (issue 18): check at
10k x 10 and 10k x 3 within 1.5x iptables-legacy-save, peak RSS under 300 MB.

    .venv/bin/python bench/bench_check.py [--cases 10000x10 10000x3 1000x10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench.* helpers when run as a script
    sys.path.insert(0, str(ROOT))
NODE = "bench-node"
TARGET_RATIO = 1.5  # check / iptables-legacy-save
TARGET_RSS_MIB = 300


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def _pod_ip(index: int) -> str:
    n = index + 1
    return f"10.{64 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def _prob(n: int) -> str:
    return f"{1.0 / n:.11f}"


def generate_shared(
    directory: Path, services: int, endpoints: int, drift: int, seed: int = 1
) -> dict[str, Any]:
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
    first = cluster.services[0]
    return {
        "services": services,
        "endpoints": cluster.endpoint_count,
        "rules": text.count("\n-A "),
        "drifted": changed,
        "svc": f"{first.namespace}/{first.name}",
        "trace_dst": f"{first.cluster_ip}:{first.ports[0].port}",
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
    from bench import measured

    cmd = [sys.executable, "-m", "kubectl_proxydoctor", "check", "--from", str(directory), "-o", "json"]
    m = measured.run(cmd, cwd=ROOT, keep_stdout=True, keep_stderr=True)
    if m.code not in (0, 1):
        raise SystemExit(f"check failed ({m.code}): {m.err.decode()[-2000:]}")
    return m.wall, m.cpu, m.rss_kib, m.code, json.loads(m.out)


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


def run_command(cmd: list[str]) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB, exit code) of one child process, output discarded."""
    from bench import measured

    m = measured.run(cmd, cwd=ROOT, keep_stderr=True)
    if m.code not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[2:])} failed ({m.code}): {m.err.decode()[-2000:]}")
    return m.wall, m.cpu, m.rss_kib, m.code


def other_commands(directory: Path, sizes: dict) -> dict[str, list[str]]:
    """status, svc and trace on the same capture (their figures are compared with check's)."""
    base = [sys.executable, "-m", "kubectl_proxydoctor"]
    out = {"status": [*base, "status", "--from", str(directory)]}
    if sizes.get("svc"):
        ns, name = sizes["svc"].split("/")
        out["svc"] = [*base, "svc", name, "-n", ns, "--from", str(directory)]
    if sizes.get("trace_dst"):
        out["trace"] = [*base, "trace", "--from", str(directory), "--dst", sizes["trace_dst"]]
    return out


def help_seconds(repeat: int = 5) -> float:
    """Best wall seconds of `kubectl-proxydoctor --help` (bytecode compiled)."""
    return min(run_command([sys.executable, "-m", "kubectl_proxydoctor", "--help"])[0] for _ in range(repeat))


def bench_case(services: int, endpoints: int, drift: int, repeat: int, builtin: bool, keep: Path | None,
               nft_timeout: float, commands: list[str]) -> dict:
    """One generated node: saves, check and the other commands side by side, best of ``repeat`` rounds."""
    from bench.saves import Saves, best, ratio

    tmp = Path(tempfile.mkdtemp(prefix="pd-bench-check-"))
    directory = keep or tmp / "node"
    try:
        if builtin:
            sizes = generate(directory, services, endpoints, drift)
        else:
            sizes = generate_shared(directory, services, endpoints, drift)
        dump = directory / "iptables-nft-save.txt"
        if not dump.exists():
            dump = directory / "iptables-save.txt"
        others = {k: v for k, v in other_commands(directory, sizes).items() if k in commands}
        saves: dict[str, list] = {"legacy": [], "nft": []}
        checks = []
        runs: dict[str, list[tuple[float, float, int, int]]] = {k: [] for k in others}
        with Saves(dump, timeout=nft_timeout) as timer:
            for _ in range(repeat):  # each round: both saves, check, the other commands
                for backend in saves:
                    saves[backend].append(timer.time(backend))
                checks.append(run_check(directory))
                for name, cmd in others.items():
                    runs[name].append(run_command(cmd))
        legacy, nft = best(saves["legacy"]), best(saves["nft"])
        seconds, cpu, rss_kib, code, report = min(checks, key=lambda r: r[0])
        stale = sum(1 for f in report["findings"] if f["code"] == "stale-endpoint")
        result: dict[str, Any] = {
            **sizes,
            "endpoints_per_service": endpoints,
            "iptables_legacy_save_seconds": legacy if isinstance(legacy, str) else round(legacy[0], 3),
            "iptables_nft_save_seconds": nft if isinstance(nft, str) else round(nft[0], 3),
            "check_seconds": round(seconds, 2),
            "check_seconds_all_runs": [round(r[0], 2) for r in checks],
            "check_cpu_seconds": round(cpu, 2),
            "check_peak_rss_mib": round(rss_kib / 1024, 1),
            "check_vs_legacy_save": ratio(seconds, legacy),
            "check_vs_nft_save": ratio(seconds, nft),
            "exit_code": code,
            "stale_endpoint_findings": stale,
            "statuses_ok": sum(1 for s in report["services"] if s["status"] == "ok"),
        }
        for name, rows in runs.items():
            wall, _cpu, rss, _code = min(rows, key=lambda r: r[0])
            result[name] = {"seconds": round(wall, 2), "peak_rss_mib": round(rss / 1024, 1),
                            "vs_check": round(wall / seconds, 2), "vs_legacy_save": ratio(wall, legacy),
                            "vs_nft_save": ratio(wall, nft)}
        result["cpu_seconds_by_step"] = phases(directory)
        drifted = sizes.get("drifted", drift)
        errors = [f for f in report["findings"] if f["severity"] == "error" and f["code"] != "stale-endpoint"]
        if stale != drifted or errors or code != (1 if drifted else 0):
            raise SystemExit(
                f"wrong diagnosis: {stale} stale endpoints for {drifted} drifted services, "
                f"other errors: {[f['code'] for f in errors][:5]}"
            )
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _case(text: str) -> tuple[int, int]:
    services, _, endpoints = text.partition("x")
    return int(services), int(endpoints or 10)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["10000x10", "10000x3", "1000x10"],
                        help="SERVICESxENDPOINTS per case")
    parser.add_argument("--services", type=int, help="one case of this many services (with --endpoints)")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--drift", type=int, default=10, help="services whose API lost an endpoint")
    parser.add_argument("--keep", type=Path, help="write the (single) generated node here and keep it")
    parser.add_argument("--builtin", action="store_true", help="the built-in ClusterIP-only generator")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each figure is the best)")
    parser.add_argument("--commands", default="status,svc,trace", help="commands timed besides check")
    parser.add_argument("--nft-timeout", type=float, default=120.0,
                        help="seconds before iptables-nft-save counts as not finishing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    cases = [(args.services, args.endpoints)] if args.services else [_case(c) for c in args.cases]
    compile_bytecode()
    results = []
    for services, endpoints in cases:
        keep = args.keep if len(cases) == 1 else None
        result = bench_case(services, endpoints, args.drift, args.repeat, args.builtin, keep,
                            args.nft_timeout, args.commands.split(","))
        results.append(result)
        print(json.dumps(result, indent=1), flush=True)
    help_s = help_seconds()
    print(f"--help (bytecode compiled): {help_s:.3f} s")
    print(f"{'case':>10} {'legacy-save':>11} {'nft-save':>9} {'check':>7} {'/legacy':>8} {'/nft':>6} "
          f"{'RSS MiB':>8}  status/svc/trace vs check")
    for r in results:
        def fig(v: object) -> str:
            return f"{v:.2f}" if isinstance(v, float) else "n/a"
        # (r["svc"] is the service's name when svc was not timed)
        rel = "/".join(fig(r[k]["vs_check"]) if isinstance(r.get(k), dict) else "-"
                       for k in ("status", "svc", "trace"))
        print(f"{r['services']:>6}x{r['endpoints_per_service']:<3} "
              f"{fig(r['iptables_legacy_save_seconds']):>11} {fig(r['iptables_nft_save_seconds']):>9} "
              f"{r['check_seconds']:>7.2f} {fig(r['check_vs_legacy_save']):>8} "
              f"{fig(r['check_vs_nft_save']):>6} "
              f"{r['check_peak_rss_mib']:>8.0f}  {rel}")
    for r in results:
        if r["services"] >= 10000:
            vs = r["check_vs_legacy_save"]
            ratio_ok = isinstance(vs, float) and vs <= TARGET_RATIO
            rss_ok = r["check_peak_rss_mib"] < TARGET_RSS_MIB
            print(f"target {r['services']} x {r['endpoints_per_service']}: check <= {TARGET_RATIO}x "
                  f"iptables-legacy-save: {'met' if ratio_ok else 'NOT met'}; "
                  f"peak RSS < {TARGET_RSS_MIB} MiB: {'met' if rss_ok else 'NOT met'}")
    return results


if __name__ == "__main__":
    main()
