"""Render a Helm chart with the small subset of Go templates its templates use (helm is not
installable here); anything outside the subset is an error, so the chart cannot silently drift away
from what this renderer checks.

Supported: ``{{ .Values.a.b }}``, ``.Release.Name``/``.Release.Namespace``, ``.Chart.Name``/
``.Chart.Version``/``.Chart.AppVersion``, ``.Files.Get "path"``, string literals ("x" and `raw`),
pipes ``| quote``, ``| toYaml``, ``| nindent N``, ``| indent N``, ``| default X``,
``{{ if X }} ... {{ else }} ... {{ end }}`` (nestable), ``{{- `` / `` -}}`` trimming, ``{{/* */}}``.

    python -m tests.helm_subset deploy/helm/kubectl-proxydoctor [--set key=value ...]
        [--show-only TEMPLATE.yaml ...] > out.yaml
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# an action; string literals inside it may hold "}}" (e.g. {{`{{ $labels.node }}`}} for Prometheus)
_ACTION = re.compile(r"\{\{(-?)\s*((?:`[^`]*`|\"(?:[^\"\\]|\\.)*\"|[^`\"}]|\}(?!\}))*?)\s*(-?)\}\}", re.S)


class TemplateError(Exception):
    pass


def _lookup(ctx: dict, path: str) -> Any:
    cur: Any = ctx
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _to_yaml(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "" if value is None else ("{}" if value == {} else "[]")
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in str(text).split("\n"))


def _term(token: str, ctx: dict, chart_dir: Path) -> Any:
    token = token.strip()
    if token.startswith("`") and token.endswith("`") and len(token) >= 2:
        return token[1:-1]
    if token.startswith('"') and token.endswith('"'):
        return json.loads(token)
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if token in ("true", "false"):
        return token == "true"
    m = re.fullmatch(r'\.Files\.Get\s+"([^"]+)"', token)
    if m:
        path = (chart_dir / m.group(1)).resolve()
        if chart_dir.resolve() not in path.parents:
            raise TemplateError(f".Files.Get outside the chart: {m.group(1)}")
        return path.read_text()
    if re.fullmatch(r"\.(Values|Release|Chart)(\.[A-Za-z0-9_]+)+", token):
        return _lookup(ctx, token)
    raise TemplateError(f"unsupported template term {token!r}")


def _split_pipes(expr: str) -> list[str]:
    parts, buf, quote = [], "", None
    for ch in expr:
        if quote:
            buf += ch
            if ch == quote:
                quote = None
        elif ch in "\"`":
            quote = ch
            buf += ch
        elif ch == "|":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    parts.append(buf.strip())
    return parts


def _evaluate(expr: str, ctx: dict, chart_dir: Path) -> Any:
    stages = _split_pipes(expr)
    value = _term(stages[0], ctx, chart_dir)
    for stage in stages[1:]:
        name, _, arg = stage.partition(" ")
        if name == "quote":
            value = json.dumps("" if value is None else str(value))
        elif name == "toYaml":
            value = _to_yaml(value)
        elif name in ("nindent", "indent"):
            text = _indent("" if value is None else value, int(arg))
            value = "\n" + text if name == "nindent" else text
        elif name == "default":
            value = value if value not in (None, "", [], {}, False) else _term(arg, ctx, chart_dir)
        else:
            raise TemplateError(f"unsupported pipe function {name!r}")
    return value


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_text(template: str, ctx: dict, chart_dir: Path) -> str:
    """Render one template file."""
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch active, parent active)
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip(" \t\n")
        if not stack or stack[-1][0]:
            out.append(text)
        pos = m.end()
        if m.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\n"))
        body = m.group(2)
        active = not stack or stack[-1][0]
        if body.startswith("/*"):
            continue
        if body.startswith("if "):
            cond = _evaluate(body[3:], ctx, chart_dir) if active else False
            stack.append((active and bool(cond), active))
        elif body == "else":
            if not stack:
                raise TemplateError("else without if")
            this, parent = stack[-1]
            stack[-1] = (parent and not this, parent)
        elif body == "end":
            if not stack:
                raise TemplateError("end without if")
            stack.pop()
        elif active:
            out.append(_scalar(_evaluate(body, ctx, chart_dir)))
    if stack:
        raise TemplateError("if without end")
    out.append(template[pos:])
    return "".join(out)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_chart(chart_dir: str | Path, values: dict | None = None, *, name: str = "kubectl-proxydoctor",
                 namespace: str = "kube-system", only: list[str] | None = None) -> str:
    """Every template of the chart (or those named in ``only``), rendered like
    ``helm template NAME CHART -n NAMESPACE [--show-only ...]``."""
    chart_dir = Path(chart_dir)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    ctx = {
        "Values": _merge(defaults, values or {}),
        "Release": {"Name": name, "Namespace": namespace},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion")},
    }
    docs = []
    for path in sorted((chart_dir / "templates").glob("*.yaml")):
        if only is not None and path.name not in only:
            continue
        text = render_text(path.read_text(), ctx, chart_dir).strip()
        if text and any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
            docs.append(f"---\n# Source: {chart['name']}/templates/{path.name}\n{text}\n")
    return "".join(docs)


def _set(values: dict, assignment: str) -> None:
    key, _, raw = assignment.partition("=")
    cur = values
    parts = key.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = yaml.safe_load(raw)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.helm_subset CHART_DIR [--set key=value ...]", file=sys.stderr)
        return 2
    values: dict = {}
    only: list[str] | None = None
    args = iter(argv[1:])
    for arg in args:
        if arg == "--set":
            _set(values, next(args))
        elif arg == "--show-only":
            only = (only or []) + [next(args)]
        else:
            print(f"unknown argument {arg!r}", file=sys.stderr)
            return 2
    sys.stdout.write(render_chart(argv[0], values, only=only))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
