"""iptables benchmark: `iptables-save` itself vs our parse + interpret, and peak memory.

For each size (default 1k, 5k and 10k services x 10 endpoints, with NodePorts, LoadBalancers and
Local policies from bench/generate.py) the generated dump is loaded with each backend's restore into
throwaway network namespaces (prefix ``pd-ipt-``, bench/saves.py); then, side by side in one run:
the time of `iptables-legacy-save` and of `iptables-nft-save` printing it, and the time of our
parse + interpret of exactly that output (in a fresh process, so its peak RSS is ours alone), plus
one trace after the load. Every ratio is to both save commands. The interpreted service ports are
checked against the generator. Target at 10k x 10: ours <= iptables-legacy-save (CPU), < 500 MB.
Needs root. Times are wall clock and CPU (user+sys): the CPU figures are fair on a busy machine.

    python bench/bench_iptables.py [--services 1000 5000 10000] [--endpoints 10] [--backend legacy|nft]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import NODE_IP, generate_cluster, iptables_save, ready  # noqa: E402

MEMORY_LIMIT_MB = 500


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, float, float]:
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return done, time.perf_counter() - t0, _children_cpu() - cpu0


def ours(path: str) -> dict:
    """Parse + interpret one saved dump (run in a fresh process); timings, peak RSS, one trace."""
    from kubectl_proxydoctor.model import Packet
    from kubectl_proxydoctor.modes.iptables.parse import parse
    from kubectl_proxydoctor.modes.iptables.tracer import Tracer
    from kubectl_proxydoctor.modes.iptables.view import interpret_ruleset

    text = Path(path).read_text()
    c0, t0 = time.process_time(), time.perf_counter()
    rs = parse(text, source=path)
    c1, t1 = time.process_time(), time.perf_counter()
    view = interpret_ruleset(rs, "iptables")
    c2, t2 = time.process_time(), time.perf_counter()
    tracer = Tracer(rs, {NODE_IP, "127.0.0.1"})
    tracer.trace(Packet("10.96.0.11", 80, "TCP", "172.16.0.9"))  # builds the chain indexes
    t3 = time.perf_counter()
    res = tracer.trace(Packet("10.96.0.12", 80, "TCP", "172.16.0.9"))
    t4 = time.perf_counter()
    return {
        "parse_s": t1 - t0,
        "interpret_s": t2 - t1,
        "parse_cpu_s": c1 - c0,
        "interpret_cpu_s": c2 - c1,
        "first_trace_ms": (t3 - t2) * 1000,
        "trace_ms": (t4 - t3) * 1000,
        "trace_outcomes": len(res.outcomes),
        "ports": len(view.ports),
        "endpoints": view.endpoint_count,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def bench_size(
    services: int, endpoints: int, backend: str, repeat: int = 1, nft_timeout: float = 120.0
) -> dict:
    """One size: both save commands on the same rules, then our parse + interpret of ``backend``'s
    output in a fresh process; the ratios are to each save command."""
    from bench.saves import Saves, best

    cluster = generate_cluster(services, endpoints, seed=1)
    text = iptables_save(cluster)
    want_ports = sum(len(s.ports) for s in cluster.services)
    with tempfile.TemporaryDirectory(prefix="pd-ipt-") as tmp:
        dump = Path(tmp) / "generated.txt"
        dump.write_text(text)
        with Saves(dump, timeout=nft_timeout) as timer:
            runs: dict[str, list] = {"legacy": [], "nft": []}
            for _ in range(repeat):
                for b in runs:
                    runs[b].append(timer.time(b))
            saved_text = timer.output(backend)
        saved = Path(tmp) / "saved.txt"
        saved.write_text(saved_text)
        lines = saved_text.count("\n")
        child, _wall, _cpu = _run([sys.executable, __file__, "--ours", str(saved)], cwd=str(ROOT))
        if child.returncode != 0:
            raise SystemExit(f"our parse failed: {child.stderr.strip()[-500:]}")
        mine = json.loads(child.stdout)
    if mine["ports"] != want_ports:
        raise SystemExit(
            f"{services} services: interpreted {mine['ports']} service ports, generated {want_ports}"
        )
    total = mine["parse_s"] + mine["interpret_s"]
    total_cpu = mine["parse_cpu_s"] + mine["interpret_cpu_s"]
    row: dict = {
        "services": services,
        "endpoints_each": endpoints,
        "backend": backend,
        "lines": lines,
        "endpoints": sum(len(ready(s)) * len(s.ports) for s in cluster.services),
        **mine,
        "ours_s": total,
        "ours_cpu_s": total_cpu,
    }
    for b, figures in runs.items():
        got = best(figures)
        row[f"{b}_save_s"] = None if isinstance(got, str) else got[0]
        row[f"{b}_save_cpu_s"] = None if isinstance(got, str) else got[1]
        row[f"{b}_save_problem"] = got if isinstance(got, str) else None
        row[f"ratio_wall_{b}"] = None if isinstance(got, str) else total / got[0]
        row[f"ratio_cpu_{b}"] = None if isinstance(got, str) or not got[1] else total_cpu / got[1]
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument(
        "--backend",
        choices=["nft", "legacy"],
        default="legacy",
        help="whose output our parser reads (both save commands are timed)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of each save command (best)")
    ap.add_argument("--nft-timeout", type=float, default=120.0)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--ours", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ours:
        print(json.dumps(ours(args.ours)))
        return []
    if os.geteuid() != 0:
        raise SystemExit("bench_iptables needs root (network namespaces)")
    rows = []
    print(
        f"{args.endpoints} endpoints per service; "
        f"our parse + interpret of iptables-{args.backend}-save's output"
    )
    print(
        f"{'services':>8} {'lines':>8} {'legacy-save':>11} {'nft-save':>9} {'ours':>7} "
        f"{'(parse/interp)':>15} {'/legacy':>7} {'/nft':>6} {'cpu/legacy':>10} {'peak MB':>8} {'trace ms':>8}"
    )
    for n in args.services:
        row = bench_size(n, args.endpoints, args.backend, args.repeat, args.nft_timeout)
        rows.append(row)
        print(
            f"{n:>8} {row['lines']:>8} {_fmt(row['legacy_save_s'], '.2f'):>11} "
            f"{_fmt(row['nft_save_s'], '.2f'):>9} "
            f"{row['ours_s']:>7.2f} {row['parse_s']:>6.2f}/{row['interpret_s']:<6.2f}  "
            f"{_fmt(row['ratio_wall_legacy'], '.2f'):>7} {_fmt(row['ratio_wall_nft'], '.2f'):>6} "
            f"{_fmt(row['ratio_cpu_legacy'], '.2f'):>10} {row['peak_mb']:>8.0f} {row['trace_ms']:>8.2f}",
            flush=True,
        )
        for b in ("legacy", "nft"):
            if row[f"{b}_save_problem"]:
                print(f"{'':>8} iptables-{b}-save: {row[f'{b}_save_problem']}")
    big = max(rows, key=lambda r: r["services"]) if rows else None
    if big:
        ok_time = big["ratio_cpu_legacy"] is not None and big["ratio_cpu_legacy"] <= 1.0
        ok_mem = big["peak_mb"] < MEMORY_LIMIT_MB
        print(
            f"target at {big['services']} services: parse+interpret <= iptables-legacy-save (cpu): "
            f"{'met' if ok_time else 'NOT met'}; "
            f"peak < {MEMORY_LIMIT_MB} MB: {'met' if ok_mem else 'NOT met'}"
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
