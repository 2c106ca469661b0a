"""`make dist`: the wheel and sdist, the single-file executable, its krew archive, and plugin.yaml.

    python -m release.build [--out dist] [--manifest plugin.yaml]

Reproducible: the bundled dependencies are pinned by hash (requirements-bundle.txt), the build
back-ends by version (constraints-build.txt), and every timestamp is SOURCE_DATE_EPOCH (default
1980-01-01), so a clean clone of the same commit rebuilds the same archive and sha256.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from release import krew, zipapp

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
DEFAULT_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold


def run(*cmd: str, env: dict[str, str]) -> None:
    """Run a build step; its output only when it fails."""
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"release.build: failed ({proc.returncode}): {' '.join(cmd)}")


def build_env() -> dict[str, str]:
    """The environment of every build step: fixed timestamps and pinned build back-ends."""
    env = dict(os.environ)
    env.setdefault("SOURCE_DATE_EPOCH", str(DEFAULT_EPOCH))
    env["PIP_CONSTRAINT"] = str(HERE / "constraints-build.txt")
    env["PYYAML_FORCE_LIBYAML"] = "0"  # PyYAML's pure-Python wheel, without the C extension
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def package(out: Path, env: dict[str, str], version: str) -> Path:
    """Build the sdist and, from it, the wheel into ``out``; return the wheel."""
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO), env=env)
    return out / f"kubectl_proxydoctor-{version}-py3-none-any.whl"


def dependencies(into: Path, env: dict[str, str]) -> list[Path]:
    """The pinned pure-Python wheels of every run-time dependency."""
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--require-hashes",
        "--only-binary", ":all:", "--no-binary", "pyyaml", "--wheel-dir", str(into),
        "-r", str(HERE / "requirements-bundle.txt"), env=env)
    return sorted(into.glob("*.whl"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m release.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output directory (dist)")
    parser.add_argument("--manifest", type=Path, default=REPO / "plugin.yaml",
                        help="krew manifest to point at the archive (plugin.yaml)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = build_env()
    epoch = int(env["SOURCE_DATE_EPOCH"])
    version = krew.project_version(REPO / "pyproject.toml")

    for stale in [*out.glob("kubectl_proxydoctor-*"), *out.glob(f"{krew.NAME}_v*.tar.gz"), out / krew.NAME]:
        stale.unlink(missing_ok=True)  # one version in `out` (the Dockerfile installs dist/'s wheel)
    wheel = package(out, env, version)
    with tempfile.TemporaryDirectory(prefix="proxydoctor-dist-") as tmp:
        deps = dependencies(Path(tmp), env)
        exe = zipapp.build([wheel, *deps], out / krew.NAME, version, epoch)
    archive = krew.pack(out / krew.archive_name(version), {
        krew.NAME: (exe.read_bytes(), 0o755),
        "LICENSE": ((REPO / "LICENSE").read_bytes(), 0o644),
    }, epoch)
    changed = krew.write_manifest(args.manifest, version, archive)
    problems = krew.verify(args.manifest, out, version)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    for path in sorted(out.iterdir()):
        if path.is_file():
            print(f"{path.stat().st_size:>10}  {path}")
    print(f"{krew.sha256(archive)}  {archive.name}")
    print(f"{args.manifest}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
