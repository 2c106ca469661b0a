"""Helpers for the migrate-check tests (no tests here): real captures, hand-made variations, API edits."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.migrate import facts
from kubectl_proxydoctor.migrate.result import MigrateContext, NodeInput
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures"


def capture_files(scenario: str) -> dict[str, str]:
    """Every file of a fixture capture, as NodeSnapshot.from_files takes them."""
    return {p.name: p.read_text() for p in sorted((FIX / scenario).iterdir()) if p.is_file()}


def snapshot(scenario: str, changes: dict[str, str | None] | None = None) -> NodeSnapshot:
    """A fixture capture with files replaced ({name: text}) or removed ({name: None})."""
    files = capture_files(scenario)
    for name, text in (changes or {}).items():
        if text is None:
            files.pop(name, None)
        else:
            files[name] = text
    return NodeSnapshot.from_files(files, origin=f"{scenario} (variant)" if changes else scenario)


def with_file(snap: NodeSnapshot, name: str, text: str | None) -> NodeSnapshot:
    files = dict(snap.files)
    if text is None:
        files.pop(name, None)
    else:
        files[name] = text
    files["meta.json"] = json.dumps(snap.meta)
    return NodeSnapshot.from_files(files, origin=snap.origin)


def with_meta(snap: NodeSnapshot, **meta) -> NodeSnapshot:
    files = dict(snap.files)
    files["meta.json"] = json.dumps({**snap.meta, **meta})
    return NodeSnapshot.from_files(files, origin=snap.origin)


def api_doc(scenario: str = "iptables/healthy") -> dict:
    return json.loads((FIX / scenario / "api.json").read_text())


def edit_config(doc: dict, **changes) -> dict:
    """Change keys of the kube-proxy ConfigMap's config.conf (dotted keys for nested ones)."""
    for item in doc["items"]:
        if item["kind"] == "ConfigMap" and item["metadata"]["name"] == "kube-proxy":
            cfg = yaml.safe_load(item["data"]["config.conf"])
            for key, value in changes.items():
                parts = key.split("__")
                target = cfg
                for part in parts[:-1]:
                    target = target.setdefault(part, {})
                target[parts[-1]] = value
            item["data"]["config.conf"] = yaml.safe_dump(cfg)
    return doc


def set_image(doc: dict, image: str) -> dict:
    for item in doc["items"]:
        if item["kind"] == "DaemonSet" and item["metadata"]["name"] == "kube-proxy":
            item["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return doc


def set_kernels(doc: dict, **kernels: str) -> dict:
    """status.nodeInfo.kernelVersion per Node (node name -> release); unnamed nodes are added."""
    nodes = {i["metadata"]["name"]: i for i in doc["items"] if i["kind"] == "Node"}
    for name, release in kernels.items():
        if name not in nodes:
            node = json.loads(json.dumps(next(iter(nodes.values()))))
            node["metadata"]["name"] = name
            doc["items"].append(node)
            nodes[name] = node
        nodes[name]["status"]["nodeInfo"]["kernelVersion"] = release
    return doc


def drop_kind(doc: dict, kind: str) -> dict:
    doc["items"] = [i for i in doc["items"] if i["kind"] != kind]
    return doc


def cluster(doc_or_scenario: dict | str = "iptables/healthy") -> ClusterState:
    doc = api_doc(doc_or_scenario) if isinstance(doc_or_scenario, str) else doc_or_scenario
    return ClusterState.from_list(doc)


def context(target: str, snap: NodeSnapshot | None = None, state: ClusterState | None = None,
            with_api: bool = True) -> MigrateContext:
    """A MigrateContext like the engine builds: config from the API, completed from the capture."""
    if state is None and with_api and snap is not None and snap.text("api.json"):
        state = ClusterState.from_json_text(snap.text("api.json") or "")
    ctx = MigrateContext(target=target, cluster=state,  # type: ignore[arg-type]
                         nodes=[NodeInput(snap)] if snap is not None else [])
    ctx.config = facts.from_cluster(state)
    if snap is not None:
        facts.add_node_facts(ctx.config, snap)
    return ctx


def only(results, check: str):
    """The single result of ``check`` in a list of CheckResults."""
    hits = [r for r in results if r.check == check]
    assert len(hits) == 1, [(r.check, r.status) for r in results]
    return hits[0]
