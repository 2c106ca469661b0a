"""node-problem-detector custom plugin answer: exit 0 OK, 1 problem, 2 unknown, one short line.

NPD runs the plugin periodically and keeps the first ``max_output_length`` (80 by default) characters
of stdout as the condition's message; the exit status decides the condition (KubeProxyDatapathDrift).
"""

from __future__ import annotations

from kubectl_proxydoctor.exit_status import NPD_CODES, ExitStatus
from kubectl_proxydoctor.report import NodeReport

NPD_OK, NPD_PROBLEM, NPD_UNKNOWN = (NPD_CODES[ExitStatus.OK], NPD_CODES[ExitStatus.PROBLEM],
                                    NPD_CODES[ExitStatus.UNKNOWN])
MAX_LINE = 80


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def npd_answer(report: NodeReport) -> tuple[int, str]:
    """(exit status, line) for an analysed node: the report's own exit status in NPD's codes."""
    status = report.exit_code
    if status is ExitStatus.UNKNOWN:
        return NPD_UNKNOWN, _short(f"unknown: could not read {', '.join(report.unreadable)}")
    errors = [f for f in report.findings if f.severity == "error"]
    if status is ExitStatus.PROBLEM:
        first = errors[0]
        where = f"{first.service}:{first.port}" if first.service else (report.node or "node")
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return NPD_PROBLEM, _short(f"drift: {first.code} {where}{more}")
    return NPD_OK, _short(f"ok: {len(report.services)} service ports match the API")


def npd_failure(error: BaseException) -> tuple[int, str]:
    """A check that could not run is unknown, never a problem."""
    return NPD_UNKNOWN, _short(f"unknown: {error}")
