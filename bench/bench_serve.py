"""serve's cost: CPU (its own and its tools') and memory while verifying N services every interval.

Real kube-proxy iptables rules for N generated services are loaded into a throwaway network namespace,
the test API server (with watch) serves the matching API objects, and `serve --netns` runs against
both (a pessimistic set-up: every check also starts `ip netns exec` and a Python interpreter inside the
namespace to read its /proc files and kube-proxy's port, which a DaemonSet on the host does not).

    python bench/bench_serve.py [--services 1000] [--interval 30] [--duration 95] [--full-resync 300]

Needs root, iproute2 and iptables-nft; prints why and exits 0 without them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import generate  # noqa: E402

from tests.apiserver import write_kubeconfig  # noqa: E402
from tests.serve_helpers import free_port, metric, scrape, wait_for  # noqa: E402
from tests.watch_apiserver import WatchApiServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and of its children it waited for (the tools it ran)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=95.0, help="seconds measured after the first check")
    ap.add_argument("--full-resync", type=float, default=300.0,
                    help="serve's --full-resync: 30 with --interval 30 re-reads every rule every interval")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables-nft-restore"):
        print("bench_serve: needs root, iproute2 and iptables-nft; skipped")
        return 0
    cluster = generate.generate_cluster(args.services, args.endpoints, seed=1)
    ns = f"pd-bench-serve-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        t = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", ns, "iptables-nft-restore"],
                       input=generate.iptables_save(cluster), text=True, check=True)
        print(f"{args.services} services, {cluster.endpoint_count} endpoints: rules loaded in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        with WatchApiServer.from_api_json(generate.api_list(cluster)) as server, \
                tempfile.TemporaryDirectory() as tmp:
            kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", {"bench": server.url})
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubectl_proxydoctor", "serve", "--netns", ns, "--node-name",
                 generate.NODE, "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{port}",
                 "--interval", str(args.interval), "--full-resync", str(args.full_resync), "--no-events"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            log: list[str] = []
            threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True).start()
            started = time.monotonic()
            wait_for(lambda: metric(scrape(port)[1], "proxydoctor_check_duration_seconds_count"), 1800,
                     step=0.5, what="the first check")
            first = time.monotonic() - started
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            peak = rss_mb(proc.pid)
            while time.monotonic() - wall0 < args.duration:
                time.sleep(1)
                peak = max(peak, rss_mb(proc.pid))
            cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
            text = scrape(port)[1]
            count = metric(text, "proxydoctor_check_duration_seconds_count")
            total = metric(text, "proxydoctor_check_duration_seconds_sum")
            print(f"startup + first check {first:.1f} s; then {count:.0f} checks, mean "
                  f"{total / count:.2f} s per check (first included)")
            print(f"CPU {100 * (cpu1 - cpu0) / (wall1 - wall0):.2f}% of one core on average over "
                  f"{wall1 - wall0:.0f} s (serve and the tools it ran); RSS now {rss_mb(proc.pid):.0f} MB, "
                  f"peak {peak:.0f} MB")
            drift = sum(metric(text, "proxydoctor_drift_service_ports", kind=k, ip_family="IPv4") or 0
                        for k in ("drift", "not-programmed", "not-expected"))
            print(f"interval now {metric(text, 'proxydoctor_check_interval_seconds'):g} s, backing off: "
                  f"{metric(text, 'proxydoctor_check_backoff'):g}; drifting service ports {drift:g}")
            for line in log:
                if "backing off" in line or "cheap again" in line or "check failed" in line:
                    print("serve: " + line.rstrip())
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
