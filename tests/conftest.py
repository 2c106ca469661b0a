"""Shared test fixtures: fixture paths, a root-only skip, and a network-namespace factory."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

requires_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create network namespaces",
)


@pytest.fixture
def fixtures_dir() -> Path:
    """tests/fixtures (real kube-proxy v1.30 captures)."""
    return FIXTURES


def ns_run(ns: str, *cmd: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command inside network namespace ``ns`` (text in/out)."""
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], input=input, capture_output=True, text=True,
                          check=check)


@pytest.fixture
def netns() -> Iterator[Callable[[str], str]]:
    """Factory: ``netns("pd-col-")`` creates a uniquely named namespace; all are deleted at teardown."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces")
    created: list[str] = []

    def make(prefix: str = "pd-") -> str:
        if not prefix.startswith("pd-"):
            raise ValueError("test namespaces must be prefixed 'pd-'")
        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        created.append(name)
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=False,
                       capture_output=True)
        return name

    try:
        yield make
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
