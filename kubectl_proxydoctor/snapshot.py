"""NodeSnapshot: everything read from one node, kept as the capture-directory files.

The capture directory (see README "Capture format") *is* the serialised snapshot: each source is
one file holding the text the stock tool prints, so a hand-made capture and ``collect`` output are
interchangeable. A missing file means "not captured", never "empty". ``meta.json`` names the node
and records, under ``sources``, why a source could not be read.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from kubectl_proxydoctor.errors import BundleError

# file name -> what makes it on a node (also the order `status` lists sources in)
CAPTURE_FILES: dict[str, str] = {
    "iptables-save.txt": "iptables-save",
    "iptables-nft-save.txt": "iptables-nft-save",
    "iptables-legacy-save.txt": "iptables-legacy-save",
    "ip6tables-save.txt": "ip6tables-save",
    "ip6tables-nft-save.txt": "ip6tables-nft-save",
    "ip6tables-legacy-save.txt": "ip6tables-legacy-save",
    "ip_tables_names.txt": "cat /proc/net/ip_tables_names",
    "ip6_tables_names.txt": "cat /proc/net/ip6_tables_names",
    "nft-ruleset.json": "nft -j list ruleset",
    "nft-ruleset.txt": "nft list ruleset",
    "ipvsadm.txt": "ipvsadm -Ln --exact",
    "proc-net-ip_vs.txt": "cat /proc/net/ip_vs",
    "ipset-save.txt": "ipset save",
    "ip-addr.json": "ip -j addr show",
    "kernel.txt": "uname -r",
    "kernel-config.txt": "zcat /proc/config.gz",
    "modules.txt": "cat /proc/modules",
    "sysctl.txt": "sysctl -a",
    "kube-proxy-metrics.txt": "curl -s 127.0.0.1:10249/metrics",
    "kube-proxy-mode.txt": "curl -s 127.0.0.1:10249/proxyMode",
    "kube-proxy-healthz.json": "curl -s 127.0.0.1:10256/healthz",
    "kube-proxy-statusz.txt": "curl -sf 127.0.0.1:10249/statusz",
    "conntrack.txt": "conntrack -L -o extended",
    "api.json": "kubectl get services,endpointslices,nodes -A -o json",
    "meta.json": "{\"node\": NAME}",
}

MAX_FILE_BYTES = 512 * 1024 * 1024  # one capture file
MAX_BUNDLE_BYTES = 2 * 1024 * 1024 * 1024  # all files together, unpacked
MAX_MEMBERS = 1000

T = TypeVar("T")


@dataclass
class NodeSnapshot:
    """The raw state of one node: capture files by name, plus why missing sources are missing."""

    files: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # source -> "ok" | "unavailable: why"
    # source -> typed readability the collector recorded ("unreadable/needs root", "absent", ...:
    # sources.Readability and sources.Why values); empty for a hand-made or older capture
    states: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    origin: str = "live"  # "live" or the path it was loaded from
    # what was computed from the files (parsed rules, interpreted views): key -> (inputs, value)
    _derived: dict[str, tuple[tuple[str | None, ...], object]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def node(self) -> str | None:
        return self.meta.get("node")

    def text(self, name: str) -> str | None:
        """The captured text of one file, or None when it was not captured."""
        return self.files.get(name)

    def has(self, name: str) -> bool:
        return name in self.files

    def unavailable(self) -> dict[str, str]:
        return {k: v for k, v in self.sources.items() if v != "ok"}

    def derived(self, key: str, inputs: tuple[str, ...], build: Callable[[], T]) -> T:
        """``build()``, computed once: cached under ``key`` for as long as the capture files named
        in ``inputs`` are the very same texts (replacing a file recomputes it)."""
        texts = tuple(self.files.get(name) for name in inputs)
        hit = self._derived.get(key)
        if hit is not None and len(hit[0]) == len(texts) and all(
                a is b for a, b in zip(hit[0], texts, strict=True)):
            return hit[1]  # type: ignore[return-value]
        value = build()
        self._derived[key] = (texts, value)
        return value

    def seed(self, key: str, inputs: tuple[str, ...], value: object) -> None:
        """Store what a collector already derived from these files (e.g. rules it parsed while
        reading them), as ``derived`` would have computed it."""
        self._derived[key] = (tuple(self.files.get(name) for name in inputs), value)

    # -- serialisation ---------------------------------------------------------------------------

    def _meta_for_save(self) -> dict:
        meta = dict(self.meta)
        meta["sources"] = dict(self.sources)
        if self.states:
            meta["source_states"] = dict(self.states)
        return meta

    def save(self, path: str | Path) -> Path:
        """Write the capture as a directory, or as a .tar.gz when the path ends so."""
        path = Path(path)
        files = dict(self.files)
        files["meta.json"] = json.dumps(self._meta_for_save(), indent=1, sort_keys=True) + "\n"
        if path.name.endswith((".tar.gz", ".tgz")):
            path.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(path, "w:gz") as tar:
                for name in sorted(files):
                    data = files[name].encode()
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
            return path
        path.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (path / name).write_text(text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NodeSnapshot:
        """Read a capture directory or a .tar(.gz) bundle; BundleError names what is wrong."""
        path = Path(path)
        if not path.exists():
            raise BundleError(f"{path}: no such file or directory")
        if path.is_dir():
            files = _read_directory(path)
        elif path.is_file() and _looks_like_tar(path):
            files = _read_tar(path)
        else:
            raise BundleError(f"{path}: not a capture directory or a .tar.gz bundle")
        return cls.from_files(files, origin=str(path))

    @classmethod
    def from_files(cls, files: dict[str, str], origin: str = "memory") -> NodeSnapshot:
        files = dict(files)
        meta: dict = {}
        if "meta.json" in files:
            try:
                meta = json.loads(files.pop("meta.json"))
            except json.JSONDecodeError as e:
                raise BundleError(f"{origin}/meta.json: not valid JSON ({e.msg} at line {e.lineno})") from e
            if not isinstance(meta, dict):
                raise BundleError(f"{origin}/meta.json: expected a JSON object")
        sources = meta.pop("sources", None) or {}
        if not isinstance(sources, dict):
            raise BundleError(f"{origin}/meta.json: 'sources' must be an object")
        states = meta.pop("source_states", None)  # optional, advisory: the reasons' text stands without it
        if not isinstance(states, dict):  # another tool's key of another shape: not ours, ignored
            states = {}
        for name in files:
            sources.setdefault(name, "ok")
        return cls(files=files, sources={str(k): str(v) for k, v in sources.items()},
                   states={str(k): v for k, v in states.items() if isinstance(v, str)}, meta=meta,
                   origin=origin)


def _looks_like_tar(path: Path) -> bool:
    """A tar or compressed tar by content; a truncated one counts, so its error names the damage."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    try:
        return tarfile.is_tarfile(path)
    except (tarfile.TarError, EOFError, OSError):
        return False


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{name}: not UTF-8 text (byte {e.start})") from e


def _check_size(what: str, size: int, total: int) -> None:
    """Refuse, before reading it, a file over MAX_FILE_BYTES or one that takes the capture over
    MAX_BUNDLE_BYTES (a capture is held in memory whole)."""
    if size > MAX_FILE_BYTES:
        raise BundleError(f"{what}: too large ({size} bytes; a capture file may hold at most "
                          f"{MAX_FILE_BYTES} bytes)")
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(f"{what}: the capture's files add up to more than {MAX_BUNDLE_BYTES} bytes "
                          f"({total} bytes so far); refused")


def _read_directory(path: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    total = 0
    for entry in sorted(path.iterdir()):
        if entry.is_symlink():
            raise BundleError(f"{entry}: symbolic links are not read from a capture")
        if not entry.is_file():
            continue
        size = entry.stat().st_size
        total += size
        _check_size(str(entry), size, total)
        files[entry.name] = _decode(str(entry), entry.read_bytes())
    return files


def snapshot_from_tar_bytes(data: bytes, origin: str = "stream") -> NodeSnapshot:
    """A snapshot from a capture tar held in memory (e.g. streamed from a collector pod)."""
    if not data:
        raise BundleError(f"{origin}: empty capture (the collector wrote nothing)")
    return NodeSnapshot.from_files(_read_tar(origin, io.BytesIO(data)), origin=origin)


def _read_tar(path: Path | str, fileobj: io.BytesIO | None = None) -> dict[str, str]:
    files: dict[str, str] = {}
    total = 0
    try:
        with tarfile.open(name=None if fileobj else path, fileobj=fileobj, mode="r:*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise BundleError(f"{path}: more than {MAX_MEMBERS} members")
                name = member.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts:
                    raise BundleError(f"{path}: unsafe member path {name!r}")
                if member.issym() or member.islnk():
                    raise BundleError(f"{path}: member {name!r} is a link; links are refused")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BundleError(f"{path}: member {name!r} is not a regular file")
                if member.size < 0:
                    raise BundleError(f"{path}: member {name!r} has an invalid size ({member.size})")
                total += member.size
                _check_size(f"{path}: member {name!r}", member.size, total)
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                data = handle.read()
                if len(data) != member.size:
                    raise BundleError(f"{path}: member {name!r} is truncated")
                # a bundle may wrap the files in one top directory (tar -C .. dir)
                files[parts[-1]] = _decode(f"{path}:{name}", data)
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        detail = " ".join(str(e).split())  # tarfile lists every method it tried, one per line
        raise BundleError(f"{path}: corrupt or truncated bundle ({detail})") from e
    return files
