"""nftables benchmark: `nft -j list table ip kube-proxy` itself vs our read + interpret.

For each size (default 1k and 5k services x 10 endpoints) the generated kube-proxy ruleset is
loaded with ``nft -f`` into a throwaway network namespace (prefix ``pd-nft-``). Then, inside that
namespace (``ip netns exec``, as proxydoctor runs on a node), side by side in one run, alternating:

- the listing alone: ``nft -j list table ip kube-proxy``;
- ours through libnftables in-process (what ``collect`` uses on a node): read every table it reads
  (``list chains``, run by an nft process alongside, both kube-proxy tables), parsing while nft
  prints, then interpret;
- ours through the ``nft`` binary (the fallback), the same work.

Each of ours is paired with a listing timed just before or after it (alternating); the ratio shown
is the median of those pairs' ratios, the times are medians. The interpreted endpoints are checked
against the generator. Target: ours at most 1.2x the listing alone. Needs root.

    python bench/bench_nftables.py [--services 1000 5000] [--endpoints 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gen_nftables import expected_ports, nft_script  # noqa: E402
from bench.generate import generate_cluster  # noqa: E402

TARGET_RATIO = 1.2


def _netns() -> str:
    name = f"pd-nft-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    return name


def measure(repeat: int) -> dict:
    """Inside the namespace: the listing vs our two paths, ``repeat`` times each, alternating."""
    from kubectl_proxydoctor.collect.libnftables import LibNftables
    from kubectl_proxydoctor.collect.nftables import alongside, cli_runner, read_tables
    from kubectl_proxydoctor.modes.nftables.interpreter import interpret_ruleset

    paths = {"libnftables": LibNftables(), "nft binary": cli_runner()}
    times: dict[str, list[float]] = {"listing": [], **{f"{p} {part}": [] for p in paths
                                                       for part in ("total", "read", "interpret", "ratio")}}
    views = {}

    def listing() -> float:
        start = time.perf_counter()
        subprocess.run(["nft", "-j", "list", "table", "ip", "kube-proxy"], check=True, capture_output=True)
        return time.perf_counter() - start

    for i in range(repeat):
        # each of ours is compared with a listing timed right before or after it (alternating),
        # so the ratio is not skewed by the machine getting faster or slower during the run
        for name, runner in paths.items():
            # the previous run's view (and the ruleset it holds) is freed here, not inside a timing
            views.pop(name, None)
            before = listing() if i % 2 == 0 else None
            t0 = time.perf_counter()
            _text, ruleset = read_tables(runner, alongside(runner))
            t1 = time.perf_counter()
            if ruleset is None:
                raise RuntimeError(f"{name}: the listing could not be parsed while read")
            view = interpret_ruleset(ruleset)[0]
            t2 = time.perf_counter()
            views[name] = view
            base = before if before is not None else listing()
            times["listing"].append(base)
            times[f"{name} total"].append(t2 - t0)
            times[f"{name} read"].append(t1 - t0)
            times[f"{name} interpret"].append(t2 - t1)
            times[f"{name} ratio"].append((t2 - t0) / base)
            del _text, ruleset, view
    ports = {name: {n.key: sorted(str(e) for e in p.endpoints) for (n, _f), p in view.ports.items()}
             for name, view in views.items()}
    return {"median": {k: statistics.median(v) for k, v in times.items()}, "ports": ports}


def bench_size(services: int, endpoints: int, repeat: int) -> dict:
    """Load one generated ruleset into a namespace and measure there."""
    cluster = generate_cluster(services, endpoints, seed=1)
    script = nft_script(cluster)
    ns = _netns()
    try:
        with tempfile.NamedTemporaryFile("w", prefix="pd-nft-", suffix=".nft") as fh:
            fh.write(script)
            fh.flush()
            start = time.perf_counter()
            done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", fh.name], capture_output=True,
                                  text=True)
            load = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"nft -f failed: {done.stderr[:1000]}")
        inner = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--measure",
                                "--repeat", str(repeat)], capture_output=True, text=True, cwd=ROOT)
        if inner.returncode != 0:
            raise RuntimeError(f"measuring in the namespace failed: {inner.stderr[-2000:]}")
        result = json.loads(inner.stdout)
        expected = {k: sorted(v) for k, v in expected_ports(cluster).items()}
        wrong = {name: sum(1 for k, v in expected.items() if got.get(k) != v)
                 for name, got in result["ports"].items()}
        return {"services": services, "endpoints": cluster.endpoint_count, "load": load,
                **result["median"], "ports": len(expected), "wrong": wrong}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # inside the namespace
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.repeat)))
        return 0
    if os.geteuid() != 0:
        print("bench_nftables: needs root (network namespaces, nft -f); skipped")
        return 0
    print(f"nftables: `nft -j list table ip kube-proxy` vs our read (parsed while read) + interpret, "
          f"{args.repeat} pairs each, inside the namespace")
    print(f"{'services':>8} {'endpoints':>9} {'nft -f':>7} {'nft -j list':>11} | {'libnftables':>11} "
          f"{'ratio':>5} {'(read':>7} {'interp)':>8} | {'nft binary':>10} {'ratio':>5}  check")
    ok = True
    for n in args.services:
        r = bench_size(n, args.endpoints, args.repeat)
        lib_ratio = r["libnftables ratio"]
        cli_ratio = r["nft binary ratio"]
        ok &= lib_ratio <= TARGET_RATIO and cli_ratio <= TARGET_RATIO and not any(r["wrong"].values())
        matches = ", ".join(f"{name} {r['ports'] - w}/{r['ports']}" for name, w in r["wrong"].items())
        print(f"{r['services']:>8} {r['endpoints']:>9} {r['load']:>6.1f}s {r['listing']:>10.3f}s | "
              f"{r['libnftables total']:>10.3f}s {lib_ratio:>4.2f}x {r['libnftables read']:>6.3f}s "
              f"{r['libnftables interpret']:>7.3f}s | {r['nft binary total']:>9.3f}s {cli_ratio:>4.2f}x  "
              f"ports' endpoints match: {matches}", flush=True)
    print(f"target: ours <= {TARGET_RATIO}x the listing alone: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
