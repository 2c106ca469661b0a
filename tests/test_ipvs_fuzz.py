"""The IPVS parsers, interpreter, checks and tracer on random and mutated real input:
they return, or raise the tool's own error (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.model import Packet
from kubectl_proxydoctor.modes.ipvs import interpret, ipset, ipvsadm, procfs, trace
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.fuzz.strategies import FUZZ_SETTINGS, inputs

HEALTHY = Path(__file__).parent / "fixtures" / "ipvs" / "healthy"
SAVE_SEED = ("-A -t 10.96.0.10:53 -s rr -p 10800\n-a -t 10.96.0.10:53 -r 10.244.1.5:53 -m -w 1\n"
             "-A -u [fd00::10]:53 -s sh\n-a -u [fd00::10]:53 -r [fd00::1:5]:53 -m -w 0\n")
PARSERS = {
    "ipvsadm-list": (ipvsadm.parse, (HEALTHY / "ipvsadm.txt").read_text()),
    "ipvsadm-save": (ipvsadm.parse, SAVE_SEED),
    "proc-net-ip_vs": (procfs.parse, (HEALTHY / "proc-net-ip_vs.txt").read_text()),
    "ipset-save": (ipset.parse, (HEALTHY / "ipset-save.txt").read_text()),
}


@pytest.mark.parametrize("label", sorted(PARSERS))
def test_parsers_raise_only_parse_errors(label):
    parse, seed = PARSERS[label]

    @FUZZ_SETTINGS
    @given(inputs(seed))
    def run(text: str) -> None:
        try:
            parse(text)
        except ProxyDoctorError:
            pass

    run()


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
