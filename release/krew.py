"""The krew archive and manifest: pack the executable, write plugin.yaml's version, URI and sha256,
and check that plugin.yaml agrees with the archives it names.

    python -m release.krew verify plugin.yaml dist    # exit 1 and one line per disagreement
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

import yaml

NAME = "kubectl-proxydoctor"
RELEASES = "https://github.com/kubectl-proxydoctor/kubectl-proxydoctor/releases/download"


def archive_name(version: str) -> str:
    """The release archive's file name (one pure-Python archive serves every platform)."""
    return f"{NAME}_v{version}.tar.gz"


def sha256(path: Path) -> str:
    """The file's sha256, as krew checks it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(target: Path, members: dict[str, tuple[bytes, int]], epoch: int) -> Path:
    """Write a tar.gz of ``members`` (name -> (data, mode)): name order, one mtime, root-owned, no
    gzip name or time, so the same members always give the same bytes."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            data, mode = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, epoch
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    with target.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=9) as gz:
        gz.write(tar_bytes.getvalue())
    return target


def write_manifest(manifest: Path, version: str, archive: Path) -> bool:
    """Point every platform of ``manifest`` at ``archive`` of ``version``; True when the file changed."""
    text = manifest.read_text()
    new = re.sub(r"(?m)^(  version: ).*$", rf"\1v{version}", text)
    new = re.sub(r"(?m)^(\s+uri: ).*$", rf"\1{RELEASES}/v{version}/{archive.name}", new)
    new = re.sub(r'(?m)^(\s+sha256: ).*$', rf'\1"{sha256(archive)}"', new)
    if new != text:
        manifest.write_text(new)
    return new != text


def verify(manifest: Path, dist: Path, version: str) -> list[str]:
    """Every way ``manifest`` disagrees with the archives in ``dist`` (empty: it agrees)."""
    spec = yaml.safe_load(manifest.read_text())["spec"]
    problems = []
    if spec.get("version") != f"v{version}":
        problems.append(f"{manifest}: spec.version is {spec.get('version')}, the package is v{version}")
    for platform in spec.get("platforms") or []:
        labels = platform["selector"]["matchLabels"]
        where = f"{manifest} ({labels.get('os')}/{labels.get('arch')})"
        uri = platform["uri"]
        if f"/v{version}/" not in uri:
            problems.append(f"{where}: {uri} is not the v{version} release")
        archive = dist / uri.rsplit("/", 1)[-1]
        if not archive.is_file():
            problems.append(f"{where}: {archive} was not built")
            continue
        if platform["sha256"] != sha256(archive):
            problems.append(f"{where}: sha256 {platform['sha256']} but {archive} has {sha256(archive)}")
        with tarfile.open(archive) as tar:
            names = tar.getnames()
        if platform["bin"] not in names:
            problems.append(f"{where}: bin {platform['bin']} is not in {archive} ({', '.join(names)})")
    return problems


def project_version(pyproject: Path) -> str:
    """The package version pyproject.toml declares."""
    import tomllib

    return tomllib.loads(pyproject.read_text())["project"]["version"]


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "verify":
        print("usage: python -m release.krew verify MANIFEST DIST_DIR", file=sys.stderr)
        return 2
    manifest, dist = Path(argv[1]), Path(argv[2])
    problems = verify(manifest, dist, project_version(Path(__file__).parents[1] / "pyproject.toml"))
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{manifest} agrees with {dist}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
