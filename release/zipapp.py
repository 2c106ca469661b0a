"""The single-file executable: a Python zip application that needs only python3 >= 3.11.

It holds a shebang, ``__main__.py`` (release/zipapp_main.py) and ``payload.zip``: the wheels' files,
unpacked by the first run into a per-build cache directory. Everything is written in a fixed order
with fixed times and modes, so the same wheels give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

SHEBANG = b"#!/usr/bin/env python3\n"
BOOTSTRAP = Path(__file__).with_name("zipapp_main.py")
# kubernetes' asyncio client needs aiohttp (compiled); proxydoctor uses the sync client.
DROPPED = ("kubernetes/aio/",)
NATIVE = (".so", ".pyd", ".dylib", ".dll")


class BundleError(Exception):
    """A wheel cannot go into the pure-Python bundle."""


def wheel_files(wheel: Path) -> dict[str, bytes]:
    """The files a wheel installs into site-packages, by their path there (scripts and data left out)."""
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            top, _, rest = name.partition("/")
            if top.endswith(".data"):
                kind, _, rest = rest.partition("/")
                if kind not in ("purelib", "platlib"):
                    continue
                name = rest
            if name.startswith(DROPPED):
                continue
            if name.endswith(NATIVE):
                raise BundleError(f"{wheel.name}: {name} is compiled code; the bundle must stay pure Python")
            files[name] = zf.read(info)
    return files


def deterministic_zip(files: dict[str, bytes], epoch: int, stored: frozenset[str] = frozenset()) -> bytes:
    """A zip of ``files`` in name order, with one timestamp and mode for all (``stored``: not compressed)."""
    stamp = time.gmtime(max(epoch, 315532800))[:6]  # zip cannot hold times before 1980
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            if name in stored:
                zf.writestr(info, files[name], compress_type=zipfile.ZIP_STORED)
            else:
                zf.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return out.getvalue()


def payload(wheels: list[Path], epoch: int) -> bytes:
    """The payload zip: every wheel's files; two wheels may not put different files at one path."""
    files: dict[str, bytes] = {}
    for wheel in sorted(wheels, key=lambda w: w.name):
        for name, data in wheel_files(wheel).items():
            if files.get(name, data) != data:
                raise BundleError(f"{wheel.name}: {name} differs from the same file in another wheel")
            files[name] = data
    return deterministic_zip(files, epoch)


def build(wheels: list[Path], target: Path, version: str, epoch: int) -> Path:
    """Write the executable to ``target``; its cache directory is named by version and payload hash."""
    data = payload(wheels, epoch)
    build_id = f"{version}-{hashlib.sha256(data).hexdigest()[:16]}"
    main = BOOTSTRAP.read_text().replace("@BUILD@", build_id).encode()
    # payload.zip is compressed already; stored, the first run reads it in place
    outer = deterministic_zip({"__main__.py": main, "payload.zip": data}, epoch,
                              stored=frozenset({"payload.zip"}))
    target.write_bytes(SHEBANG + outer)
    target.chmod(0o755)
    return target
