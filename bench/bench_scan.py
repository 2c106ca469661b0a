"""Fleet scan memory: peak memory must follow the concurrency, not the node count.

Simulated nodes: each "collection" loads a real capture from disk (as a collector pod's tar would
arrive) and the real analysis runs on it; the scan keeps only per-node summaries. Prints wall time
and tracemalloc peak for 100 and 1000 nodes at concurrency 10.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubectl_proxydoctor.analysis import analyse  # noqa: E402
from kubectl_proxydoctor.cluster import ClusterState  # noqa: E402
from kubectl_proxydoctor.remote.scan import scan  # noqa: E402
from kubectl_proxydoctor.snapshot import NodeSnapshot  # noqa: E402

CAPTURE = ROOT / "tests" / "fixtures" / "iptables" / "stale-endpoint"


def run(nodes: int, concurrency: int = 10) -> tuple[float, float, int]:
    cluster = ClusterState.from_json_text((CAPTURE / "api.json").read_text())
    tracemalloc.start()
    start = time.perf_counter()
    result = scan((f"node-{i:05d}" for i in range(nodes)), lambda node: NodeSnapshot.load(CAPTURE),
                  lambda snap, node: analyse(snap, cluster, node_name="pdnode1"), concurrency=concurrency)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20, len(result.nodes)


def main() -> None:
    print("== fleet scan (simulated nodes, real capture + real analysis per node, concurrency 10)")
    print(f"{'nodes':>6} {'wall s':>8} {'ms/node':>8} {'peak MiB':>9}")
    for nodes in (100, 1000):
        elapsed, peak, done = run(nodes)
        print(f"{done:>6} {elapsed:>8.1f} {1000 * elapsed / done:>8.1f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
