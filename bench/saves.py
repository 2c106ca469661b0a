"""Both iptables backends' own dump commands on the same rules: the yardsticks of every iptables
figure (iptables-legacy-save and iptables-nft-save; on this machine plain `iptables-save` is the nft
one, several times slower than legacy on the same rules, so a ratio to it alone flatters us).

The rules are loaded with each backend's restore into a throwaway network namespace (pd-ipt-*),
deleted on exit; the host's own rules are never touched. Needs root.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path

BACKENDS = ("legacy", "nft")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Saves:
    """``with Saves(dump) as saves: saves.time("legacy")`` -> (wall s, CPU s), or why it failed."""

    def __init__(self, dump: Path, timeout: float = 120.0) -> None:
        self.dump = dump
        self.timeout = timeout
        self.namespaces: dict[str, str] = {}
        self.problems: dict[str, str] = {}

    def __enter__(self) -> Saves:
        if os.geteuid() != 0 or not shutil.which("ip"):
            self.problems = {b: "needs root and ip(8) (network namespaces)" for b in BACKENDS}
            return self
        for backend in BACKENDS:
            if not shutil.which(f"iptables-{backend}-restore"):
                self.problems[backend] = f"iptables-{backend}-restore not installed"
                continue
            ns = f"pd-ipt-{backend}-{uuid.uuid4().hex[:8]}"
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
            self.namespaces[backend] = ns
            with self.dump.open("rb") as rules:
                done = subprocess.run(["ip", "netns", "exec", ns, f"iptables-{backend}-restore"], stdin=rules,
                                      capture_output=True)
            if done.returncode != 0:
                self.problems[backend] = f"restore failed: {done.stderr.decode()[:200]}"
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def time(self, backend: str) -> tuple[float, float] | str:
        """One run of iptables-BACKEND-save: (wall, CPU) seconds, or why there is no figure.

        iptables-nft-save 1.8.9 recurses in libnftnl and overflows the default 8 MB stack on large
        rulesets (segfault): it gets an unlimited stack, as one would give it on such a node."""
        if backend in self.problems:
            return self.problems[backend]
        cmd = ["sh", "-c", f"ulimit -s unlimited; exec ip netns exec {self.namespaces[backend]} "
               f"iptables-{backend}-save"]
        cpu0, start = _children_cpu(), time.perf_counter()
        try:
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.problems[backend] = f"did not finish in {self.timeout:.0f} s"
            return self.problems[backend]
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
        if done.returncode != 0:
            why = done.stderr.decode()[:200]
            self.problems[backend] = f"exit {done.returncode} after {wall:.1f} s: {why}"
            return self.problems[backend]
        return wall, cpu


    def output(self, backend: str) -> str:
        """What iptables-BACKEND-save prints for the loaded rules (SystemExit when it cannot)."""
        if backend in self.problems:
            raise SystemExit(f"iptables-{backend}-save: {self.problems[backend]}")
        cmd = ["sh", "-c", f"ulimit -s unlimited; exec ip netns exec {self.namespaces[backend]} "
               f"iptables-{backend}-save"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        if done.returncode != 0:
            raise SystemExit(f"iptables-{backend}-save failed (exit {done.returncode}): {done.stderr[:300]}")
        return done.stdout


def best(runs: list[tuple[float, float] | str]) -> tuple[float, float] | str:
    """The best (lowest wall) of the runs that gave a figure, else the first reason."""
    figures = [r for r in runs if not isinstance(r, str)]
    if figures:
        return min(figures, key=lambda r: r[0])
    return runs[0] if runs else "not run"


def ratio(seconds: float, save: tuple[float, float] | str) -> float | str:
    """seconds / the save command's wall seconds, or the reason there is no save figure."""
    return round(seconds / save[0], 2) if not isinstance(save, str) else f"n/a ({save})"
