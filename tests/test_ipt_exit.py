"""The process exit path: the console script / `python -m` end with os._exit after flushing, so
every byte of the output arrives and the exit code is the command's; main() in-process still
raises SystemExit (tests rely on it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "kubectl-proxydoctor"


@pytest.mark.parametrize("cmd", [[sys.executable, "-m", "kubectl_proxydoctor"], [str(SCRIPT)]],
                         ids=["python -m", "console script"])
def test_whole_output_and_exit_code(cmd, tmp_path):
    if not Path(cmd[0]).exists():
        pytest.skip("console script not installed")
    out = tmp_path / "report.json"
    with out.open("w") as f:  # a file: block-buffered, so the flush before os._exit matters
        done = subprocess.run([*cmd, "check", "--sample", "-o", "json"], stdout=f, stderr=subprocess.PIPE,
                              cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr  # the sample has drift
    report = json.loads(out.read_text())
    assert report["findings"] and report["services"]
    bad = subprocess.run([*cmd, "check", "--from", str(tmp_path / "missing")], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 3 and bad.stderr.startswith("kubectl-proxydoctor: ")
    assert "Traceback" not in bad.stderr


def test_closed_pipe_is_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "kubectl_proxydoctor", "check", "--sample", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err


def test_main_in_process_raises_system_exit():
    with pytest.raises(SystemExit) as e:
        main(["check", "--sample", "-o", "json"])
    assert e.value.code == 1


def test_atexit_handlers_still_run(tmp_path):
    marker = tmp_path / "ran"
    code = (f"import atexit, pathlib, sys; atexit.register(pathlib.Path({str(marker)!r}).write_text, 'x'); "
            "sys.argv = ['kubectl-proxydoctor', 'check', '--sample', '-o', 'json']; "
            "from kubectl_proxydoctor.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["findings"]
    assert marker.read_text() == "x"
