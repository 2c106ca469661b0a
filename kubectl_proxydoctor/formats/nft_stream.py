"""Decode `nft -j` output while nft is still printing it.

nft builds its whole JSON document before printing, and printing 10 MB (1k services) takes about
as long again; decoding each top-level item of the ``{"nftables": [...]}`` array as soon as it is
complete overlaps our parse with that printing, on the other core. The items go to a
RulesetBuilder, so the result is exactly ``parse_ruleset_text`` of the whole text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.nft_model import NftRuleset
from kubectl_proxydoctor.formats.nft_parse import RulesetBuilder, decode_items
from kubectl_proxydoctor.gcpause import gc_paused

_HEAD_RE = re.compile(r'\s*\{\s*"nftables"\s*:\s*\[\s*')
_SPACE_RE = re.compile(r"\s*")
_TAIL_RE = re.compile(r"\s*\}\s*\Z")
# between two top-level items in nft's compact output (expressions never start with "family")
_SEPARATORS = tuple(f'}}}}, {{"{kind}": {{"family": ' for kind in ("rule", "chain", "set", "map", "element"))
_HEAD_MAX = 64  # a head longer than this is not nft's layout: decoded whole at the end


class ItemStream:
    """Feed text chunks as they arrive; every complete item of the ``nftables`` array is passed
    to ``on_item`` at once. ``close()`` checks the document ended properly (ParseError if not).

    Input that does not start like nft's output is kept whole and decoded at ``close()``.
    """

    def __init__(self, on_item: Callable[[object], None], source: str = "nft-ruleset.json") -> None:
        self.on_item = on_item
        self.source = source
        self._decode = json.JSONDecoder().raw_decode
        self._loads = json.loads
        self._buf = ""
        self._pos = 0
        self._state = "head"  # head -> item -> sep -> end | whole
        self._retry_at = 0  # an incomplete item is tried again once the buffer reaches this size
        self._whole: list[str] = []
        self.items = 0

    def feed(self, chunk: str) -> None:
        """Add the next piece of text."""
        if self._state == "whole":
            self._whole.append(chunk)
            return
        self._buf = self._buf[self._pos:] + chunk if self._pos else self._buf + chunk
        self._retry_at -= self._pos
        self._pos = 0
        if len(self._buf) >= self._retry_at:
            self._drain(final=False)

    def close(self) -> None:
        """The text is complete: decode what is left, or raise ParseError for a truncated or
        malformed document."""
        if self._state == "whole":
            self._whole_document()
            return
        self._drain(final=True)
        if self._state == "whole":
            self._whole_document()
            return
        rest = self._buf[self._pos:]
        if self._state == "end":
            if not _TAIL_RE.match(rest):
                raise ParseError(self.source, "unexpected text after the nftables array: "
                                              f"{rest.strip()[:60]!r}")
            return
        if self._state == "head":
            self._whole = [rest]
            self._whole_document()
            return
        raise ParseError(self.source, f"not valid JSON (truncated?): the document ends after {self.items} "
                                      "items, inside the nftables array")

    # -- internals -------------------------------------------------------------------------------

    def _drain(self, final: bool) -> None:
        buf, pos, decode = self._buf, self._pos, self._decode
        state = self._state
        while True:
            if state == "head":
                m = _HEAD_RE.match(buf, pos)
                if m is None:
                    if final or len(buf) - pos > _HEAD_MAX or not _could_be_head(buf[pos:]):
                        self._state = "whole"
                        self._whole = [buf[pos:]]
                        self._buf, self._pos = "", 0
                        return
                    break
                pos = m.end()
                if buf.startswith("]", pos):
                    state = "end"
                    pos += 1
                    continue
                state = "item"
            elif state == "item":
                pos = _SPACE_RE.match(buf, pos).end()  # type: ignore[union-attr]
                # fast path: every complete item up to the last separator between items, decoded
                # in one call; a separator inside a string makes that text invalid JSON, and then
                # the items are decoded one by one
                cut = max(buf.rfind(sep, pos) for sep in _SEPARATORS)
                if cut > pos:
                    try:
                        items = self._loads("[" + buf[pos:cut + 2] + "]")
                    except json.JSONDecodeError:
                        items = None
                    if items is not None:
                        on_item = self.on_item
                        for item in items:
                            on_item(item)
                        self.items += len(items)
                        pos = cut + 2
                        state = "sep"
                        continue
                try:
                    item, end = decode(buf, pos)
                except json.JSONDecodeError as e:
                    if final:
                        self._buf, self._pos, self._state = buf, pos, state
                        cut = e.pos >= len(buf.rstrip()) - 1 or e.msg.startswith("Unterminated")
                        hint = " (truncated?)" if cut else ""
                        raise ParseError(self.source, f"not valid JSON{hint}: {e.msg} in item "
                                                      f"{self.items}") from e
                    # incomplete (or malformed: then close() says so); try again once the
                    # buffer has doubled its pending part, so a big item is not rescanned often
                    self._retry_at = len(buf) + max(len(buf) - pos, 4096)
                    break
                self.items += 1
                self.on_item(item)
                pos = end
                state = "sep"
            elif state == "sep":
                pos = _SPACE_RE.match(buf, pos).end()  # type: ignore[union-attr]
                if pos >= len(buf):
                    break
                ch = buf[pos]
                if ch == ",":
                    pos += 1
                    state = "item"
                elif ch == "]":
                    pos += 1
                    state = "end"
                else:
                    self._buf, self._pos, self._state = buf, pos, state
                    raise ParseError(self.source, f"not valid JSON: expected ',' or ']' after item "
                                                  f"{self.items}, found {buf[pos:pos + 20]!r}")
            else:  # end: only "}" and whitespace may follow, checked by close()
                break
        self._buf, self._pos, self._state = buf, pos, state

    def _whole_document(self) -> None:
        text = "".join(self._whole)
        self._whole = []
        for item in decode_items(text, self.source):
            self.items += 1
            self.on_item(item)

def _could_be_head(text: str) -> bool:
    """Whether ``text`` could still grow into ``{"nftables": [``."""
    compact = re.sub(r"\s+", "", text)
    return '{"nftables":['.startswith(compact[:13]) if compact else True


def parse_stream(chunks: object, source: str = "nft-ruleset.json") -> NftRuleset:
    """The ruleset of an iterable of text chunks (the same result as parse_ruleset_text)."""
    with gc_paused():
        builder = RulesetBuilder(source)
        stream = ItemStream(builder.add, source)
        for chunk in chunks:  # type: ignore[attr-defined]
            stream.feed(chunk)
        stream.close()
        return builder.finish()
