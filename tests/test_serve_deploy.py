"""The Helm chart and the plain manifests: the manifests are the chart rendered with its defaults,
every Kubernetes object validates strictly against the API schema (the kubernetes client's models,
unknown fields refused), the DaemonSet is as locked down as promised, the container's arguments are
accepted by the real CLI, and the alerts pass promtool (syntax and rule unit tests)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.helm_subset import TemplateError, render_chart, render_text

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy/helm/kubectl-proxydoctor"
MANIFESTS = ROOT / "deploy/manifests"
MONITORING = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
              "grafanaDashboard": {"enabled": True}}
MONITORING_TEMPLATES = ["servicemonitor.yaml", "prometheusrule.yaml", "dashboard.yaml"]
MODELS = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _all_objects() -> list[dict]:
    return _docs(render_chart(CHART, MONITORING))


def strict(data: object, type_name: str, path: str) -> None:
    """Check ``data`` against a kubernetes client model type, refusing unknown fields."""
    if type_name.startswith(("list[", "List[")):
        assert isinstance(data, list), f"{path}: expected a list"
        for i, item in enumerate(data):
            strict(item, type_name[5:-1], f"{path}[{i}]")
    elif type_name.startswith(("dict(", "Dict[")):
        assert isinstance(data, dict), f"{path}: expected a map"
        inner = type_name[type_name.index(",") + 1:-1].strip()
        for k, v in data.items():
            strict(v, inner, f"{path}.{k}")
    elif type_name == "str":
        assert isinstance(data, str), f"{path}: expected a string, got {data!r}"
    elif type_name == "int":
        assert isinstance(data, int) and not isinstance(data, bool), f"{path}: expected an integer"
    elif type_name == "bool":
        assert isinstance(data, bool), f"{path}: expected a boolean"
    elif type_name in ("object", "float", "datetime", "date", "bytes"):
        pass
    else:
        cls = getattr(client, type_name)
        assert isinstance(data, dict), f"{path}: expected an object ({type_name})"
        fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
        for key, value in data.items():
            assert key in fields, f"{path}: unknown field {key!r} in {type_name}"
            strict(value, cls.openapi_types[fields[key]], f"{path}.{key}")


def test_plain_manifests_are_the_chart_rendered_with_defaults() -> None:
    assert (MANIFESTS / "kubectl-proxydoctor.yaml").read_text() == render_chart(CHART)
    assert (MANIFESTS / "monitoring.yaml").read_text() == render_chart(CHART, MONITORING,
                                                                      only=MONITORING_TEMPLATES)


def test_every_object_validates_against_the_api_schema() -> None:
    api = client.ApiClient()
    kinds = []
    for doc in _all_objects() + _docs(render_chart(CHART)):
        kinds.append(doc["kind"])
        key = (doc["apiVersion"], doc["kind"])
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # CRDs: checked below (promtool, structure)
        model = MODELS[key]
        strict(doc, model, doc["kind"])
        obj = api.deserialize(json.dumps(doc), model, "application/json")  # required fields, enums
        assert obj.metadata.name
    assert {"DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "ConfigMap",
            "PrometheusRule", "ServiceMonitor"} <= set(kinds)


def test_strict_validation_refuses_unknown_fields() -> None:
    ds = next(d for d in _all_objects() if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = True
    with pytest.raises(AssertionError, match="unknown field 'readOnlyRootFs'"):
        strict(ds, "V1DaemonSet", "DaemonSet")


def test_daemonset_is_locked_down() -> None:
    objects = _docs(render_chart(CHART))
    ds = next(d for d in objects if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["args"][0] == "serve"
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    sa = next(d for d in objects if d["kind"] == "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    svc = next(d for d in objects if d["kind"] == "Service")
    assert svc["spec"]["selector"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_rbac_is_minimal() -> None:
    objects = _docs(render_chart(CHART))
    role = next(d for d in objects if d["kind"] == "ClusterRole")
    grants = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
              for v in rule["verbs"]}
    assert grants == {(g, r, v) for g, r in (("", "services"), ("", "nodes"),
                                             ("discovery.k8s.io", "endpointslices"))
                      for v in ("get", "list", "watch")} | {("", "events", "create"), ("", "events", "patch")}
    binding = next(d for d in objects if d["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    ns_role = next(d for d in objects if d["kind"] == "Role")
    assert all(rule["verbs"] == ["get"] and rule["resourceNames"] for rule in ns_role["rules"])


def test_container_args_are_accepted_by_the_cli() -> None:
    ds = next(d for d in _docs(render_chart(CHART, {"serve": {"events": False}})) if d["kind"] == "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-events" in args
    done = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", *args, "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", *args, "--no-such-flag", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2  # the check above can fail


def test_servicemonitor_scrapes_the_service() -> None:
    objects = _all_objects() + _docs(render_chart(CHART))
    sm = next(d for d in objects if d["kind"] == "ServiceMonitor")
    svc = next(d for d in objects if d["kind"] == "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]


def _exported_metric_names() -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    from kubectl_proxydoctor.serve.metrics import ServeMetrics

    metrics = ServeMetrics()
    metrics.set_drifts(set(), set())
    metrics.set_findings({("error", "x"): 1})
    from prometheus_client import generate_latest

    names = set()
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        names |= {s.name for s in family.samples}
    return names


def test_dashboard_and_alerts_use_metrics_serve_exports() -> None:
    exported = _exported_metric_names()
    dashboard = json.loads((CHART / "dashboards/kubectl-proxydoctor.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rule = next(d for d in _all_objects() if d["kind"] == "PrometheusRule")
    exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in re.findall(r"\b((?:proxydoctor|process)_[a-z_]+)", e)}
    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    cm = next(d for d in _all_objects() if d["kind"] == "ConfigMap")
    assert json.loads(cm["data"]["kubectl-proxydoctor.json"]) == dashboard


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_alerts_pass_promtool(tmp_path: Path) -> None:
    rule = next(d for d in _all_objects() if d["kind"] == "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    n3 = '{node="n3",instance="10.0.0.3:9977"}'
    drift = ('proxydoctor_drift_service_ports{node="n1",instance="10.0.0.1:9977",kind="drift",'
             'ip_family="IPv4"}')
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": drift, "values": "0 0 1x30"},
                {"series": drift.replace("n1", "n2").replace("10.0.0.1", "10.0.0.2"), "values": "0x32"},
                {"series": "proxydoctor_check_unknown" + n3, "values": "0 1x30"},
                {"series": "proxydoctor_check_interval_seconds" + n3, "values": "30x31"},
            ],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "KubeProxyDatapathDrift", "exp_alerts": []},
                {"eval_time": "13m", "alertname": "KubeProxyDatapathDrift", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "node": "n1", "instance": "10.0.0.1:9977"},
                    "exp_annotations": {
                        "summary": "kube-proxy's rules on n1 differ from the API",
                        "description": _description(rule, "KubeProxyDatapathDrift", node="n1",
                                                    instance="10.0.0.1:9977", value="1"),
                    }}]},
                {"eval_time": "5m", "alertname": "ProxyDoctorChecksFailing", "exp_alerts": []},
                {"eval_time": "13m", "alertname": "ProxyDoctorChecksFailing", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "node": "n3", "instance": "10.0.0.3:9977"},
                    "exp_annotations": {
                        "summary": "proxydoctor cannot verify kube-proxy on n3",
                        "description": _description(rule, "ProxyDoctorChecksFailing", node="n3",
                                                    instance="10.0.0.3:9977", namespace="", pod="",
                                                    value="1"),
                    }}]},
            ],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    done = subprocess.run([PROMTOOL, "test", "rules", "tests.yaml"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # and a failing expectation fails (the test can fail)
    tests["tests"][0]["alert_rule_test"][0]["eval_time"] = "13m"
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    done = subprocess.run([PROMTOOL, "test", "rules", "tests.yaml"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode != 0


def _description(rule: dict, alert: str, **labels: str) -> str:
    text = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert)[
        "annotations"]["description"]
    text = text.replace("{{ $value }}", labels.pop("value"))
    for k, v in labels.items():
        text = text.replace("{{ $labels." + k + " }}", v)
    return text


def test_renderer_refuses_what_it_does_not_support() -> None:
    ctx = {"Values": {"a": 1}, "Release": {}, "Chart": {}}
    assert render_text("x: {{ .Values.a }}", ctx, CHART) == "x: 1"
    with pytest.raises(TemplateError):
        render_text("{{ include \"x\" . }}", ctx, CHART)
    with pytest.raises(TemplateError):
        render_text("{{ if .Values.a }}open", ctx, CHART)
