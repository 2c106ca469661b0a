"""Hypothesis strategies for fuzzing parsers: random text and mutations of real captures."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PROXYDOCTOR_FUZZ_EXAMPLES", "150"))

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 1000,  # the short run in `make test` is repeatable
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@st.composite
def mutated(draw: st.DrawFn, seed_text: str) -> str:
    """A real input with a few random edits: truncation, dropped/duplicated/swapped lines,
    replaced tokens and inserted junk."""
    lines = seed_text.splitlines(keepends=True)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not lines:
            lines = [draw(st.text(max_size=40))]
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap", "junk", "cut", "token", "truncate"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "junk":
            lines.insert(i, draw(st.text(max_size=60)) + "\n")
        elif op == "cut":
            line = lines[i]
            lines[i] = line[: draw(st.integers(min_value=0, max_value=len(line)))]
        elif op == "token":
            words = lines[i].split(" ")
            k = draw(st.integers(min_value=0, max_value=len(words) - 1))
            words[k] = draw(st.sampled_from(["", "-j", "!", "--", "{", "}", "\"", "999999999999",
                                             "-1", "::", "0x", "nan", "1.2.3.4/99", "\\", "\x00"]))
            lines[i] = " ".join(words)
        else:
            return "".join(lines)[: draw(st.integers(min_value=0, max_value=len("".join(lines))))]
    return "".join(lines)


def inputs(seed_text: str) -> st.SearchStrategy[str]:
    """Random text, or a mutated real input (mostly the latter: it reaches deeper)."""
    return st.one_of(st.text(max_size=300), mutated(seed_text), mutated(seed_text))
