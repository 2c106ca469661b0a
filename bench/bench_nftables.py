"""nftables benchmark: `nft -j list table ip kube-proxy` itself vs our read + interpret.

For each size (default 1k and 5k services x 10 endpoints) the generated kube-proxy ruleset is
loaded with ``nft -f`` into a throwaway network namespace (prefix ``pd-nft-``), then, side by side
in one run: the time of the listing alone, and the time of our collector (``list tables`` + the
kube-proxy tables) + parse + interpret, with the interpreted endpoints checked against the
generator. Target: ours at most 1.2x the listing alone. Needs root.

    python bench/bench_nftables.py [--services 1000 5000] [--endpoints 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gen_nftables import expected_ports, nft_script  # noqa: E402
from bench.generate import generate_cluster  # noqa: E402

TARGET_RATIO = 1.2


def _netns() -> str:
    name = f"pd-nft-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    return name


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_size(services: int, endpoints: int, repeat: int) -> dict:
    """Load one generated ruleset into a namespace and time the listing against our pipeline."""
    from kubectl_proxydoctor.collect import CollectContext
    from kubectl_proxydoctor.collect.nftables import collect
    from kubectl_proxydoctor.modes.nftables.interpreter import interpret_ruleset
    from kubectl_proxydoctor.modes.nftables.parse import parse_ruleset_text

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
        listing, ours, parts = [], [], {"collect": [], "parse": [], "interpret": []}
        view = None
        for _ in range(repeat):
            listing.append(_time(lambda: subprocess.run(
                ["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "ip", "kube-proxy"],
                check=True, capture_output=True)))
            t0 = time.perf_counter()
            ctx = CollectContext(netns=ns)
            collect(ctx)
            t1 = time.perf_counter()
            ruleset = parse_ruleset_text(ctx.files["nft-ruleset.json"])
            t2 = time.perf_counter()
            views = interpret_ruleset(ruleset)
            t3 = time.perf_counter()
            ours.append(t3 - t0)
            for key, value in (("collect", t1 - t0), ("parse", t2 - t1), ("interpret", t3 - t2)):
                parts[key].append(value)
            view = views[0]
        got = {n.key: {str(e) for e in p.endpoints} for (n, _f), p in view.ports.items()}
        expected = expected_ports(cluster)
        wrong = sum(1 for k, v in expected.items() if got.get(k) != v)
        return {"services": services, "endpoints": cluster.endpoint_count, "rules_lines": script.count("\n"),
                "load": load, "listing": statistics.median(listing), "ours": statistics.median(ours),
                **{k: statistics.median(v) for k, v in parts.items()}, "ports": len(expected), "wrong": wrong}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_nftables: needs root (network namespaces, nft -f); skipped")
        return 0
    print(f"nftables: `nft -j list table ip kube-proxy` vs our read + interpret (median of {args.repeat})")
    print(f"{'services':>8} {'endpoints':>9} {'nft -f load':>11} {'nft -j list':>11} {'ours':>8} "
          f"{'ratio':>6} {'(collect':>9} {'parse':>7} {'interp)':>8}  check")
    ok = True
    for n in args.services:
        r = bench_size(n, args.endpoints, args.repeat)
        ratio = r["ours"] / r["listing"]
        ok &= ratio <= TARGET_RATIO and r["wrong"] == 0
        print(f"{r['services']:>8} {r['endpoints']:>9} {r['load']:>10.2f}s {r['listing']:>10.3f}s "
              f"{r['ours']:>7.3f}s {ratio:>5.2f}x {r['collect']:>8.3f}s {r['parse']:>6.3f}s "
              f"{r['interpret']:>7.3f}s  {r['ports'] - r['wrong']}/{r['ports']} ports' endpoints match",
              flush=True)
    print(f"target: ours <= {TARGET_RATIO}x the listing alone: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
