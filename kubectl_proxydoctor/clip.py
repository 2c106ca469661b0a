"""Bound the text a report shows: a line longer than a limit is cut with a note of what was cut.

A rule can carry a comment of megabytes; showing it whole makes reports unreadable (and the
terminal renderer slow), so evidence, messages and error texts go through ``clip``.
"""

from __future__ import annotations

EVIDENCE_LIMIT = 512  # characters of one evidence line
MESSAGE_LIMIT = 2048  # characters of a message or fix text


def clip(text: str, limit: int = EVIDENCE_LIMIT) -> str:
    """``text`` itself when it fits in ``limit`` characters, else its start and
    ``... (N bytes cut)``, N counted in UTF-8 bytes of the part left out."""
    if len(text) <= limit:
        return text
    cut = text[limit:]
    return f"{text[:limit]}... ({len(cut.encode('utf-8', 'surrogateescape'))} bytes cut)"


def clip_lines(lines: list[str], limit: int = EVIDENCE_LIMIT) -> list[str]:
    """Each line clipped, exact repeats dropped (first occurrence kept, order kept)."""
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        line = clip(line, limit)
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out
