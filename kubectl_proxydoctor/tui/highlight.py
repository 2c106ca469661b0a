"""Syntax highlighting for raw rules: iptables-save lines, nft rules and IPVS servers."""

from __future__ import annotations

from rich.highlighter import RegexHighlighter
from rich.text import Text
from rich.theme import Theme


class RuleHighlighter(RegexHighlighter):
    """Highlights chain names, verbs, targets, comments, addresses and ports in rule text."""

    base_style = "rule."
    highlights = [
        r"(?P<comment>\"[^\"]*\")",
        r"(?m)(?P<verb>^-[AINDR]\b|^\*\w+|^:[\w-]+|^COMMIT\b)",
        r"(?P<chain>\b(?:KUBE|CNI|cali)-[\w-]+|\b(?:service|endpoint|external|local|firewall|affinity)-"
        r"[0-9A-Za-z]{8}-[^\s;]+)",
        r"(?P<target>(?:-j|-g|--jump|--goto)\s+[\w-]+|\b(?:jump|goto|dnat|masquerade|reject|drop|accept|"
        r"vmap|numgen)\b|\b(?:DNAT|MASQUERADE|REJECT|DROP|ACCEPT|RETURN|MARK)\b)",
        r"(?P<option>\s--?[a-z][\w-]*)",
        r"(?P<address>\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?(?::\d+)?\b|\[[0-9a-fA-F:]+\](?::\d+)?)",
        r"(?P<number>\b\d+(?:\.\d+)?\b)",
    ]


RULE_THEME = Theme(
    {
        "rule.comment": "green",
        "rule.verb": "bold magenta",
        "rule.chain": "bold cyan",
        "rule.target": "bold yellow",
        "rule.option": "blue",
        "rule.address": "bright_white underline",
        "rule.number": "magenta",
    }
)

_HIGHLIGHTER = RuleHighlighter()


def highlight_rules(lines: list[str]) -> Text:
    """The lines as one highlighted Text (styles resolve through RULE_THEME's names)."""
    text = Text("\n".join(lines), no_wrap=False, overflow="fold")
    _HIGHLIGHTER.highlight(text)
    return resolve_styles(text)


def resolve_styles(text: Text) -> Text:
    """Replace theme style names with concrete styles so Textual renders them without a theme."""
    styles = RULE_THEME.styles
    for span_index, span in enumerate(text.spans):
        if isinstance(span.style, str) and span.style in styles:
            text.spans[span_index] = span._replace(style=styles[span.style])
    return text
