"""Benchmark: the API side of `check` step by step (issue 18), in-process CPU, this tree against another.

On one capture (e.g. a node from bench/generate.py, or /work/data/ipt10k/cap) it builds the node
state once, then times each step that does not read rules, ``--repeat`` times in a row: decoding
api.json (``json.loads`` alone, and with the shape checks: ``ClusterState.from_json_text``), the
expected view, the drift comparison, the service port statuses and the JSON rendering. With
``--base TREE`` (e.g. main exported with ``git archive``) each round runs both trees' packages in
child processes one after the other, so both see the same load; every figure is the best over all
rounds. The rule parsing and interpretation (modes/) are not timed here: bench_check.py has them.

    .venv/bin/python bench/bench_api_steps.py --capture DIR [--base /tmp/main_src] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("json.loads", "api.json -> ClusterState", "expected view", "drift comparison", "statuses",
         "render JSON")


def worker(capture: Path, repeat: int) -> dict[str, float]:
    """Best CPU seconds of each step in this process (the package of the working directory)."""
    import gc

    sys.path.insert(0, os.getcwd())
    from kubectl_proxydoctor import analysis
    from kubectl_proxydoctor.checks import CheckContext
    from kubectl_proxydoctor.checks.drift_compare import compare
    from kubectl_proxydoctor.cluster import ClusterState, of_capture
    from kubectl_proxydoctor.expected import expected_for_node
    from kubectl_proxydoctor.node_state import build_node_state
    from kubectl_proxydoctor.render.structured import render
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    gc.disable()  # as the CLI runs
    snapshot = NodeSnapshot.load(capture)
    text = snapshot.text("api.json") or ""
    cluster = of_capture(snapshot)
    state = build_node_state(snapshot, cluster)
    report = analysis.report_for(state)
    steps = {
        "json.loads": lambda: json.loads(text),
        "api.json -> ClusterState": lambda: ClusterState.from_json_text(text),
        "expected view": lambda: expected_for_node(cluster, state.node, semantics=state.identity.semantics),
        "drift comparison": lambda: compare(CheckContext.of(state)),
        "statuses": lambda: analysis._statuses(report, state.expected, state.primary),
        "render JSON": lambda: render(report, "json"),
    }
    out = {}
    for name in STEPS:
        times = []
        for _ in range(repeat):
            start = time.process_time()
            steps[name]()
            times.append(time.process_time() - start)
        out[name] = min(times)
    return out


def run_tree(tree: Path, capture: Path, repeat: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--capture", str(capture),
           "--repeat", str(repeat)]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, required=True)
    parser.add_argument("--base", type=Path, help="another tree, timed in the same rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step per round")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.capture, args.repeat)))
        return
    trees = {"head": ROOT} | ({"base": args.base} if args.base else {})
    best: dict[str, dict[str, float]] = {name: {} for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            for step, seconds in run_tree(tree, args.capture.resolve(), args.repeat).items():
                best[name][step] = min(seconds, best[name].get(step, seconds))
    result: dict[str, dict] = {}
    for name, figures in best.items():
        result[name] = {k: round(v, 3) for k, v in figures.items()}
        result[name]["total"] = round(sum(v for k, v in figures.items() if k != "json.loads"), 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
