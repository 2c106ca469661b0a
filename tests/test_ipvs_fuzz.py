"""The IPVS interpreter, checks and tracer on mutated real captures: they return, or raise the
tool's own error (never a traceback). The parsers alone are fuzzed in tests/fuzz."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.model import Packet
from kubectl_proxydoctor.modes.ipvs import interpret, trace
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.fuzz.strategies import FUZZ_SETTINGS, inputs

HEALTHY = Path(__file__).parent / "fixtures" / "ipvs" / "healthy"
CAPTURE = NodeSnapshot.load(HEALTHY)
CHECKS = ["ipvs-kube-ipvs0", "ipvs-weights", "ipvs-ipsets", "ipvs-kernel-modules", "ipvs-sysctls"]


@FUZZ_SETTINGS
@given(st.sampled_from(["ipvsadm.txt", "proc-net-ip_vs.txt", "ipset-save.txt", "ip-addr.json",
                        "iptables-nft-save.txt", "modules.txt"]), st.data())
def test_whole_pipeline_on_a_mutated_capture(name, data):
    snap = NodeSnapshot.from_files(dict(CAPTURE.files))
    snap.files[name] = data.draw(inputs(CAPTURE.files[name]))
    if name == "proc-net-ip_vs.txt":
        snap.files.pop("ipvsadm.txt")
    try:
        interpret(snap)
        run_checks(CheckContext(snap), only=CHECKS)
        trace(snap, Packet("10.96.100.10", 80, "TCP", "172.30.0.2"))
    except ProxyDoctorError:
        pass
