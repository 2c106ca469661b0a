"""Run one command and measure it: wall and CPU seconds, peak RSS, exit status, stdout.

The peak RSS is taken by a small launcher process that forks the command itself. Measured straight
from the bench (``os.wait4`` on its own child), a child's ``ru_maxrss`` starts at the bench
process's own peak: Linux carries the parent's high-water mark over fork and exec (a 600 MB parent
reports 628 MB for ``true``), so every figure was at least the bench's own size (the generated
cluster), e.g. 481 MiB for a 10k x 3 check that peaks at far less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = r"""
import json, os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), json.dumps([os.waitstatus_to_exitcode(status),
                                       usage.ru_utime + usage.ru_stime, usage.ru_maxrss]).encode())
"""


@dataclass
class Measured:
    wall: float  # seconds
    cpu: float  # user + system seconds of the command
    rss_kib: int  # the command's own peak RSS
    code: int  # exit status
    out: bytes  # stdout (empty when not kept)
    err: bytes  # stderr (empty when not kept)


def run(argv: list[str], cwd: Path | None = None, keep_stdout: bool = False,
        keep_stderr: bool = False) -> Measured:
    """Run ``argv`` through the launcher (stdin empty); stdout/stderr kept or discarded."""
    read, write = os.pipe()
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, str(write), *argv], pass_fds=[write], cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL)
    finally:
        os.close(write)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read()
    if proc.returncode != 0 or not report:
        raise RuntimeError(f"measuring {argv[0]} failed (launcher exit {proc.returncode})")
    code, cpu, rss = json.loads(report)
    return Measured(wall, cpu, rss, code, out or b"", err or b"")
