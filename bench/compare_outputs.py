"""Byte-compare two source trees' CLI output on every fixture capture (issue 18's merge condition).

For every capture (tests/fixtures/**/ and /work/shared/fixtures/**/ directories with a meta.json, plus
any ``--extra`` directory) it runs ``check -o json``, ``check`` (text), ``status -o json``,
``svc NAME -o json`` (the capture's first Service) and ``check -n NAMESPACE`` with each tree's
package (``--base`` and ``--head``, e.g. an exported main and this checkout) and the same Python,
and reports every difference in stdout or exit code.

    .venv/bin/python bench/compare_outputs.py --base /tmp/main_src [--extra /work/data/ipt10k/cap]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def captures(extra: list[Path]) -> list[Path]:
    found = sorted(p.parent for p in (ROOT / "tests" / "fixtures").rglob("meta.json"))
    shared = Path("/work/shared/fixtures")
    if shared.is_dir():
        found += sorted(p.parent for p in shared.rglob("meta.json"))
    return found + extra


def first_service(capture: Path) -> tuple[str, str] | None:
    try:
        doc = json.loads((capture / "api.json").read_text())
    except (OSError, ValueError):
        return None
    for item in doc.get("items") or []:
        if isinstance(item, dict) and item.get("kind") == "Service":
            meta = item.get("metadata") or {}
            if isinstance(meta, dict) and meta.get("name"):
                return str(meta.get("namespace") or "default"), str(meta["name"])
    return None


def commands(capture: Path) -> list[list[str]]:
    out = [["check", "--from", str(capture), "-o", "json"], ["check", "--from", str(capture)],
           ["status", "--from", str(capture), "-o", "json"]]
    svc = first_service(capture)
    if svc:
        ns, name = svc
        out.append(["svc", name, "-n", ns, "--from", str(capture), "-o", "json"])
        out.append(["check", "--from", str(capture), "-n", ns])
    return out


def run(tree: Path, args: list[str]) -> tuple[int, bytes, bytes]:
    env = dict(os.environ, PYTHONPATH=str(tree), COLUMNS="120", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", *args], cwd=tree, env=env,
                          capture_output=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the reference tree (e.g. main exported)")
    parser.add_argument("--head", type=Path, default=ROOT, help="the tree under test (default: this one)")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more capture directories")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    jobs = [(c, cmd) for c in captures(args.extra) for cmd in commands(c)]

    def one(job: tuple[Path, list[str]]) -> str | None:
        _capture, cmd = job
        base, head = run(args.base, cmd), run(args.head, cmd)
        if base[:2] == head[:2]:
            return None
        return (f"DIFF {' '.join(cmd)}: exit {base[0]} vs {head[0]}\n"
                f"  base stderr: {base[2].decode()[-300:]}\n  head stderr: {head[2].decode()[-300:]}")

    with ThreadPoolExecutor(args.jobs) as pool:
        diffs = [d for d in pool.map(one, jobs) if d]
    for d in diffs:
        print(d)
    print(f"{len(jobs)} outputs compared ({len({c for c, _ in jobs})} captures), {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
