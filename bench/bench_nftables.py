"""nftables benchmark (issue 19): `collect` and `check --from` vs `nft -j list ruleset`, both layouts.

For each size (default 1k and 5k services x 10 endpoints; ``--services 10000`` for the issue's
10k node) and each kube-proxy layout (``v1.30``: endpoint chains; ``v1.36``: numgen DNAT maps, no
endpoint chains without affinity; bench/gen_nftables.py), the generated ruleset is loaded with
``nft -f`` into a throwaway network namespace (``pd-nft-bench-*``, deleted afterwards). Then, side
by side in one run, ``--repeat`` rounds of:

- ``nft -j list ruleset`` in the namespace (nft's own listing: the yardstick);
- ``kubectl-proxydoctor collect -o DIR`` in the namespace (the nftables read is most of it; the
  ``reader`` column says whether kube-proxy's table came over netlink or, falling back, from nft);
- ``kubectl-proxydoctor check --from DIR -o json`` on that capture, with the cluster's API objects
  (``--drift`` ClusterIP services lose a ready endpoint in the API: the rules keep a stale one).

Each figure is the best of the rounds: wall time, and the peak RSS of the process (os.wait4:
the largest of the process and the children it waited for; nft's own RSS for the listing). The
ratio is (collect + check) / listing. The services reported not ok must be the drifted ones, and
beyond them only services whose generated external IP:port clashes with an earlier service's
(``conflicts``).
Needs root. The default (1k and 5k, both layouts) takes about 6 min here, most of it loading the
rules (the kernel's commit). ``--services 10000`` takes about 30 min with ``--repeat 3`` on this
2-core machine under load: the v1.30 layout alone loads in 6.5 min, and each round is a listing
(25-80 s), a collect (40-90 s) and a check (12-25 s); v1.36 loads in 3 min.

    python bench/bench_nftables.py [--services 1000 5000] [--layouts v1.30 v1.36] [--repeat 3]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT))

from bench import measured  # noqa: E402
from bench.bench_check import compile_bytecode  # noqa: E402
from bench.gen_nftables import LAYOUTS, nft_script  # noqa: E402
from bench.generate import GenCluster, api_list, generate_cluster, ip_addr_json, ready  # noqa: E402

TARGET_RATIO = 1.0  # issue 19: collect + check --from at most the listing's time
TARGET_RSS = 0.5  # ... and each at most half of nft's peak RSS
CLI = [sys.executable, "-m", "kubectl_proxydoctor"]


def timed(argv: list[str], stdout: int | None = subprocess.DEVNULL) -> tuple[float, int, int, bytes]:
    """Wall seconds, peak RSS (KiB; bench/measured.py), exit status and stdout of one command."""
    m = measured.run(argv, cwd=ROOT, keep_stdout=stdout is None)
    return m.wall, m.rss_kib, m.code, m.out


def drift(cluster: GenCluster, count: int) -> set[str]:
    """Remove one ready endpoint from ``count`` single-port ClusterIP services in the API (after
    the rules were generated): "ns/name" of each."""
    changed: set[str] = set()
    for svc in cluster.services:
        if len(changed) >= count:
            break
        live = ready(svc)
        if svc.type == "ClusterIP" and svc.internal_policy == "Cluster" and len(svc.ports) == 1 \
                and len(live) > 1 and not svc.affinity_seconds:
            svc.endpoints.remove(live[0])
            changed.add(f"{svc.namespace}/{svc.name}")
    return changed


def conflicts(cluster: GenCluster) -> set[str]:
    """Services that may lose an external IP:port to an earlier service claiming the same one (the
    generator can draw the same external IP twice; nft refuses a duplicate key in one map, so only
    the first is programmed there): check rightly reports those that lost one, and may."""
    owner: dict[tuple[str, str, int], str] = {}
    losers: set[str] = set()
    for svc in cluster.services:
        name = f"{svc.namespace}/{svc.name}"
        for ip in [*svc.external_ips, *svc.lb_ips]:
            for port in svc.ports:
                if owner.setdefault((ip, port.protocol, port.port), name) != name:
                    losers.add(name)
    return losers


def not_ok(report: dict) -> set[str]:
    """Services the report does not call ok."""
    return {s["service"] for s in report.get("services", []) if s.get("status") != "ok"}


def bench_one(services: int, endpoints: int, layout: str, repeat: int, drifts: int) -> dict:
    """Load one generated ruleset into a namespace and measure there."""
    cluster = generate_cluster(services, endpoints, seed=1)
    script = nft_script(cluster, layout)
    drifted = drift(cluster, drifts)
    clashing = conflicts(cluster)
    ns = f"pd-nft-bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="pd-nft-bench-"))
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        (work / "rules.nft").write_text(script)
        start = time.perf_counter()
        done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(work / "rules.nft")],
                              capture_output=True, text=True)
        load = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"nft -f failed: {done.stderr[:1000]}")
        best: dict[str, tuple[float, int]] = {}
        reported: set[str] | None = None
        for i in range(repeat):
            cap = work / f"cap{i}"
            runs = {
                "listing": ["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"],
                "collect": ["ip", "netns", "exec", ns, *CLI, "collect", "-o", str(cap)],
            }
            for name, argv in (runs.items() if i % 2 == 0 else reversed(runs.items())):
                took, rss, rc, _ = timed(argv)
                if name == "collect" and rc not in (0, 3):  # 3: no API here (written below)
                    raise RuntimeError(f"collect exited {rc}")
                if name == "listing" and rc != 0:
                    raise RuntimeError(f"nft -j list ruleset exited {rc}")
                best[name] = min(best.get(name, (took, rss)), (took, rss))
            (cap / "api.json").write_text(json.dumps(api_list(cluster)))
            (cap / "ip-addr.json").write_text(ip_addr_json(cluster))
            (cap / "kube-proxy-mode.txt").write_text("nftables")
            meta = json.loads((cap / "meta.json").read_text())
            reader = meta.get("nftables_reader") or {}
            read_by = "netlink" if reader.get("netlink") and not reader.get("nft_fallbacks") else "nft"
            meta["node"] = cluster.node
            (cap / "meta.json").write_text(json.dumps(meta))
            took, rss, rc, out = timed([*CLI, "check", "--from", str(cap), "-o", "json"], stdout=None)
            best["check"] = min(best.get("check", (took, rss)), (took, rss))
            try:
                reported = not_ok(json.loads(out))
            except json.JSONDecodeError:
                raise RuntimeError(f"check --from printed no JSON (exit {rc})") from None
            shutil.rmtree(cap)
        nft_rss = best["listing"][1]
        return {"services": services, "layout": layout, "endpoints": cluster.endpoint_count, "load": load,
                "reader": read_by,
                **{f"{k} s": v[0] for k, v in best.items()},
                **{f"{k} MB": v[1] / 1024 for k, v in best.items()},
                "ratio": (best["collect"][0] + best["check"][0]) / best["listing"][0],
                "collect rss ratio": best["collect"][1] / nft_rss,
                "check rss ratio": best["check"][1] / nft_rss,
                "drifted": len(drifted), "found": len(drifted & (reported or set())),
                "clashing": len(clashing), "clashes found": len(clashing & (reported or set())),
                "extra": sorted((reported or set()) - drifted - clashing)[:5]}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--drift", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_nftables: needs root (network namespaces, nft -f); skipped")
        return 0
    compile_bytecode()  # as an installed tool has it (this environment sets PYTHONDONTWRITEBYTECODE)
    print(f"nftables (issue 19): collect + check --from vs `nft -j list ruleset`, best of {args.repeat}, "
          "side by side in one run")
    print(f"{'services':>8} {'layout':>6} {'load':>6} | {'listing':>15} | {'collect':>15} | "
          f"{'check --from':>15} | {'ratio':>5} {'rss c/n':>7} {'rss k/n':>7} | reader | drift found")
    ok = True
    for n in args.services:
        for layout in args.layouts:
            r = bench_one(n, args.endpoints, layout, args.repeat, args.drift)
            good = r["found"] == r["drifted"] and not r["extra"]
            ok &= (good and r["ratio"] <= TARGET_RATIO and r["collect rss ratio"] <= TARGET_RSS
                   and r["check rss ratio"] <= TARGET_RSS)
            cells = " | ".join(f"{r[k + ' s']:>6.2f}s {r[k + ' MB']:>6.0f}MB"
                               for k in ("listing", "collect", "check"))
            print(f"{n:>8} {layout:>6} {r['load']:>5.0f}s | {cells} | {r['ratio']:>4.2f}x "
                  f"{r['collect rss ratio']:>6.2f}x {r['check rss ratio']:>6.2f}x | {r['reader']:>7} | "
                  f"{r['found']}/{r['drifted']} (+ external IP clashes {r['clashes found']}/{r['clashing']})"
                  f"{' extra: ' + ', '.join(r['extra']) if r['extra'] else ''}",
                  flush=True)
    print(f"target: ratio <= {TARGET_RATIO}x, each peak RSS <= {TARGET_RSS}x nft's, drifts found and nothing "
          f"else: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
