"""A capture's api.json with malformed objects: one-line errors where the API is needed (`check`),
and no effect on the commands that do not need it (`status`, `trace`)."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli import main
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ParseError

HEALTHY = Path(__file__).parent / "fixtures" / "iptables" / "healthy"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    enabled = gc.isenabled()
    try:
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
    finally:
        if enabled:
            gc.enable()
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out, captured.err


def _capture(tmp_path: Path, mutate) -> Path:
    capture = tmp_path / "capture"
    shutil.copytree(HEALTHY, capture)
    doc = json.loads((capture / "api.json").read_text())
    mutate(doc["items"])
    (capture / "api.json").write_text(json.dumps(doc))
    return capture


def _first(items: list[dict], kind: str) -> dict:
    return next(i for i in items if i["kind"] == kind)


def _node_status_string(items):
    _first(items, "Node")["status"] = "x"


def _service_spec_list(items):
    _first(items, "Service")["spec"] = [1]


def _load_balancer_list(items):
    _first(items, "Service")["status"] = {"loadBalancer": [1]}


def _ports_string(items):
    _first(items, "Service")["spec"]["ports"] = "bogus"


MALFORMED = [_node_status_string, _service_spec_list, _load_balancer_list, _ports_string]


@pytest.mark.parametrize("mutate", MALFORMED, ids=lambda f: f.__name__.strip("_"))
def test_check_names_a_malformed_api_object_in_one_line(mutate, tmp_path, capsys):
    capture = _capture(tmp_path, mutate)
    code, out, err = _run(capsys, "check", "--from", str(capture), "-o", "json")
    assert code == 3 and out == ""
    assert err.startswith("kubectl-proxydoctor: ") and "api.json: item " in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_junk_list_elements_are_still_skipped():
    doc = json.loads((HEALTHY / "api.json").read_text())
    node = _first(doc["items"], "Node")
    node["status"]["addresses"] = ["junk", *node["status"]["addresses"]]
    assert ClusterState.from_list(doc).nodes  # kube-proxy skips such junk, and so do the readers
    node["status"]["addresses"] = "junk"
    with pytest.raises(ParseError, match=r"status\.addresses: expected a list"):
        ClusterState.from_list(doc)


def _insane_and_malformed(items):
    for item in items:
        if item["kind"] == "Node":
            item["metadata"]["name"] = "another-cluster-node"
    _first(items, "Service")["spec"]["ports"][0]["port"] = "eighty"


@pytest.mark.parametrize("mutate", [*MALFORMED, _insane_and_malformed],
                         ids=lambda f: f.__name__.strip("_"))
def test_status_and_trace_do_not_need_the_api(mutate, tmp_path, capsys):
    """`status` and `trace` read api.json only to share check's NodeState: one they cannot use is a
    note, and they answer from the rules as without it."""
    capture = _capture(tmp_path, mutate)
    code, out, err = _run(capsys, "status", "--from", str(capture), "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "iptables" and doc["rules"]["iptables"]
    assert any(n.startswith("api.json not used: ") for n in doc["notes"])
    code, out, err = _run(capsys, "trace", "--from", str(capture), "--dst", "10.96.0.10:53/udp", "-o", "json")
    assert code == 0, err
    assert json.loads(out)
