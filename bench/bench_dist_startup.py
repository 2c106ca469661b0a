"""`--help` of the single-file build against the pipx-installed wheel (issue: within 1.5x).

Builds the release artifacts once and runs the timing test of tests/test_dist.py, which `make test`
skips (timings belong to the benchmarks, not the unit tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    env = {**os.environ, "PROXYDOCTOR_BENCH": "1"}
    test = "tests/test_dist.py::test_the_single_file_starts_within_1_5x_of_the_installed_package"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test],
                          cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
