"""Machine-readable reports: JSON exactly as the design notes' "JSON report", and the same as YAML."""

from __future__ import annotations

import json

from kubectl_proxydoctor.report import NodeReport


def report_json(report: NodeReport) -> str:
    """The stable JSON report (NodeReport.to_json), indented, with a trailing newline."""
    return json.dumps(report.to_json(), indent=2) + "\n"


def report_yaml(report: NodeReport) -> str:
    """The same document as YAML (block style, keys in JSON order)."""
    import yaml

    return yaml.safe_dump(report.to_json(), sort_keys=False, default_flow_style=False, allow_unicode=True)


def render(report: NodeReport, output: str) -> str:
    """``json`` or ``yaml`` text of a report."""
    return report_yaml(report) if output == "yaml" else report_json(report)
