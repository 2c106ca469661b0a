"""`make dist` end to end: the archive installed as krew installs it and run through the real kubectl in
a clean environment (fresh network namespace, temporary HOME, PATH without the virtualenv, the system
python3 with none of the project's dependencies), the wheel through pipx, and plugin.yaml's sha256.

The build runs once per module, into a temporary directory with a copy of plugin.yaml.
"""

from __future__ import annotations

import email.parser
import json
import os
import pty
import re
import select
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from release import krew, zipapp
from tests.apiserver import write_kubeconfig
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # no virtualenv, no pyenv, no /usr/local
STALE = FIXTURES / "iptables" / "stale-endpoint"
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]")

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None or not Path(SYSTEM_PYTHON).exists(),
    reason="needs kubectl and the system python3",
)


@dataclass(frozen=True)
class Built:
    out: Path
    manifest: Path
    version: str

    @property
    def archive(self) -> Path:
        return self.out / krew.archive_name(self.version)

    @property
    def exe(self) -> Path:
        return self.out / krew.NAME

    @property
    def wheel(self) -> Path:
        return self.out / f"kubectl_proxydoctor-{self.version}-py3-none-any.whl"

    @property
    def sdist(self) -> Path:
        return self.out / f"kubectl_proxydoctor-{self.version}.tar.gz"


def checked(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """`make dist` into a temporary directory, writing a copy of plugin.yaml."""
    base = tmp_path_factory.mktemp("dist")
    manifest = base / "plugin.yaml"
    shutil.copy(REPO / "plugin.yaml", manifest)
    checked(subprocess.run(["make", "-s", "dist", f"DIST={base / 'out'}", f"MANIFEST={manifest}"], cwd=REPO,
                           capture_output=True, text=True, timeout=900))
    return Built(base / "out", manifest, krew.project_version(REPO / "pyproject.toml"))


@pytest.fixture(scope="module")
def krew_root(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the linux/amd64 platform of the built manifest as krew does: check the sha256, unpack,
    copy the `files`, link `bin` into KREW_ROOT/bin."""
    root = tmp_path_factory.mktemp("krew")
    spec = yaml.safe_load(built.manifest.read_text())
    name, version = spec["metadata"]["name"], spec["spec"]["version"]
    platform = next(p for p in spec["spec"]["platforms"]
                    if p["selector"]["matchLabels"] == {"os": "linux", "arch": "amd64"})
    archive = built.out / platform["uri"].rsplit("/", 1)[-1]
    assert krew.sha256(archive) == platform["sha256"]
    download = root / "download"
    with tarfile.open(archive) as tar:
        tar.extractall(download, filter="data")
    store = root / "store" / name / version
    store.mkdir(parents=True)
    for rule in platform["files"]:
        for source in download.glob(rule["from"]):
            shutil.copy2(source, store / rule["to"] / source.name)
    (root / "bin").mkdir()
    (root / "bin" / f"kubectl-{name}").symlink_to(store / platform["bin"])
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary HOME for the clean runs (the first run unpacks into its cache)."""
    return tmp_path_factory.mktemp("home")


def clean_env(home: Path, *path: Path, **extra: str) -> dict[str, str]:
    """A whole environment: ``home``, ``path`` before the system directories, nothing else inherited."""
    return {"HOME": str(home), "PATH": ":".join([*map(str, path), CLEAN_PATH]), "TERM": "xterm-256color",
            "LANG": "C.UTF-8", **extra}


def in_ns(ns: str, env: dict[str, str], *cmd: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``cmd`` in network namespace ``ns`` with exactly ``env`` (nothing inherited)."""
    return subprocess.run(["ip", "netns", "exec", ns, *env_i(env), *cmd], capture_output=True, text=True,
                          timeout=timeout, cwd=env["HOME"])  # not the repository: python puts cwd on sys.path


def env_i(env: dict[str, str]) -> list[str]:
    """`env -i K=V ...`: start the command with exactly ``env``."""
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items())]


@pytest.fixture
def kubectl(netns, krew_root: Path, home: Path):
    """Run `kubectl ...` in a fresh network namespace, in the clean environment, krew's bin on PATH."""
    ns = netns("pd-dist-")
    return lambda *args, timeout=180: in_ns(ns, clean_env(home, krew_root / "bin"), "kubectl", *args,
                                             timeout=timeout)


# -- the manifest and the archive ----------------------------------------------------------------------


def test_the_manifest_the_build_wrote_agrees_with_its_archive(built: Built) -> None:
    assert krew.verify(built.manifest, built.out, built.version) == []
    spec = yaml.safe_load(built.manifest.read_text())["spec"]
    assert spec["version"] == f"v{built.version}"
    assert {p["sha256"] for p in spec["platforms"]} == {krew.sha256(built.archive)}
    assert {p["uri"] for p in spec["platforms"]} == {f"{krew.RELEASES}/v{built.version}/{built.archive.name}"}
    with tarfile.open(built.archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["LICENSE", krew.NAME]
    assert members[krew.NAME].mode == 0o755 and members[krew.NAME].uid == 0


def test_the_check_fails_when_plugin_yaml_disagrees(built: Built, tmp_path: Path) -> None:
    stale = tmp_path / "plugin.yaml"
    zeros = "0" * 64
    stale.write_text(re.sub(r'sha256: "[0-9a-f]{64}"', f'sha256: "{zeros}"', built.manifest.read_text()))
    proc = subprocess.run([sys.executable, "-m", "release.krew", "verify", str(stale), str(built.out)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "sha256 " + "0" * 64 in proc.stderr and krew.sha256(built.archive) in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "release.krew", "verify", str(built.manifest), str(built.out)],
                        cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_committed_plugin_yaml_names_this_release(built: Built) -> None:
    """The committed manifest is the built one up to the sha256 (which `make dist-check` compares)."""
    def without_hashes(path: Path) -> str:
        return re.sub(r'sha256: "[0-9a-f]{64}"', "sha256: -", path.read_text())

    assert without_hashes(REPO / "plugin.yaml") == without_hashes(built.manifest)


def test_packing_is_deterministic(built: Built, tmp_path: Path) -> None:
    again = krew.pack(tmp_path / built.archive.name, {
        krew.NAME: (built.exe.read_bytes(), 0o755),
        "LICENSE": ((REPO / "LICENSE").read_bytes(), 0o644),
    }, 315532800)
    assert again.read_bytes() == built.archive.read_bytes()
    with zipfile.ZipFile(built.exe) as outer:
        payload = zipfile.ZipFile(outer.open("payload.zip"))
        infos = outer.infolist() + payload.infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    names = [i.filename for i in payload.infolist()]
    assert names == sorted(names)


def test_the_single_file_is_pure_python(built: Built) -> None:
    with zipfile.ZipFile(built.exe) as outer:
        assert outer.namelist() == ["__main__.py", "payload.zip"]
        names = zipfile.ZipFile(outer.open("payload.zip")).namelist()
    assert not [n for n in names if n.endswith(zipapp.NATIVE)]
    assert not [n for n in names if n.startswith("kubernetes/aio/")]
    for needed in ("kubectl_proxydoctor/cli/__init__.py", "kubectl_proxydoctor/tui/proxydoctor.tcss",
                   "kubectl_proxydoctor/sample/api.json", "kubectl_proxydoctor/scripts/collect-node.sh",
                   "typer/__init__.py", "textual/app.py", "kubernetes/client/api_client.py",
                   "yaml/__init__.py", "pyroute2/__init__.py", "websocket/__init__.py"):
        assert needed in names
    print(f"\nsingle file {built.exe.stat().st_size / 1e6:.1f} MB, "
          f"krew archive {built.archive.stat().st_size / 1e6:.1f} MB, {len(names)} files")


# What proxydoctor imports inside functions (the walk below imports every module's top level).
LAZY_IMPORTS = ["kubernetes.client", "kubernetes.client.exceptions", "kubernetes.config.kube_config",
                "kubernetes.config.config_exception", "kubernetes.config.incluster_config",
                "kubernetes.stream", "pyroute2", "pyroute2.netns", "pyroute2.ipvs", "urllib3.exceptions",
                "yaml", "rich.progress"]
IMPORT_ALL = """
import importlib, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import kubectl_proxydoctor
names = [m.name for m in pkgutil.walk_packages(kubectl_proxydoctor.__path__, "kubectl_proxydoctor.")
         if not m.name.endswith(".__main__")]  # that one runs the CLI
for name in names + sys.argv[2:]:
    module = importlib.import_module(name)
    assert module.__file__.startswith(sys.argv[1]), module.__file__
print(len(names))
"""


def test_every_module_imports_from_the_bundle_alone(built: Built, tmp_path: Path) -> None:
    """Every proxydoctor module and what it imports lazily, from the payload and the standard library
    only (`-I -S`): a dependency the bundle lacks (kubernetes 37's pydantic, say) fails here."""
    with zipfile.ZipFile(built.exe) as outer:
        zipfile.ZipFile(outer.open("payload.zip")).extractall(tmp_path / "site")
    proc = subprocess.run([SYSTEM_PYTHON, "-I", "-S", "-c", IMPORT_ALL, str(tmp_path / "site"),
                           *LAZY_IMPORTS], env=clean_env(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 50


def test_wheel_and_sdist_metadata(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as whl:
        info = f"kubectl_proxydoctor-{built.version}.dist-info"
        meta = email.parser.Parser().parsestr(whl.read(f"{info}/METADATA").decode())
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
        assert "kubectl_proxydoctor/tui/proxydoctor.tcss" in whl.namelist()
        assert f"{info}/licenses/LICENSE" in whl.namelist()
    assert meta["Name"] == "kubectl-proxydoctor" and meta["Version"] == built.version
    assert meta["Requires-Python"] == ">=3.11" and meta["License-Expression"] == "Apache-2.0"
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Intended Audience :: System Administrators" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    assert "kubectl-plugin" in meta["Keywords"] and meta["Author"]
    assert any(r.replace(" ", "").startswith("typer") and "<0.29" in r for r in meta.get_all("Requires-Dist"))
    assert "[console_scripts]\nkubectl-proxydoctor = kubectl_proxydoctor.cli:main" in entry_points
    with tarfile.open(built.sdist) as sdist:
        names = sdist.getnames()
    assert f"kubectl_proxydoctor-{built.version}/LICENSE" in names


def test_the_dockerfile_installs_the_built_wheel(built: Built) -> None:
    """The image is built from dist/ (docker itself is not here): its COPY picks exactly the built wheel."""
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = re.search(r"^COPY dist/(\S+) ", dockerfile, re.M)
    assert copied is not None
    assert [p.name for p in built.out.glob(copied.group(1))] == [built.wheel.name]
    assert f"!dist/{copied.group(1)}" in (REPO / ".dockerignore").read_text().splitlines()
    assert 'ENTRYPOINT ["kubectl-proxydoctor"]' in dockerfile


# -- installed as krew installs it, run in a clean environment -----------------------------------------


def test_the_clean_environment_has_none_of_the_dependencies(netns, home: Path, krew_root: Path) -> None:
    env = clean_env(home, krew_root / "bin")
    ns = netns("pd-dist-")
    found = in_ns(ns, env, "sh", "-c", "command -v python3")
    assert found.stdout.strip() == SYSTEM_PYTHON
    # Debian's python3 may have PyYAML, pygments or oauthlib: the single file puts its own copies first
    # on sys.path, and the `-I -S` runs below (only the standard library) prove nothing else is needed.
    for module in ("typer", "textual", "rich", "kubernetes", "pyroute2", "kubectl_proxydoctor"):
        proc = in_ns(ns, env, "python3", "-c", f"import {module}")
        assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, module
    links = in_ns(ns, env, "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]


def test_kubectl_discovers_the_plugin(kubectl, krew_root: Path) -> None:
    proc = kubectl("plugin", "list")
    assert str(krew_root / "bin" / "kubectl-proxydoctor") in proc.stdout, proc.stdout + proc.stderr
    proc = checked(kubectl("proxydoctor", "--help"))
    assert "Usage: kubectl-proxydoctor" in proc.stdout
    for command in ("status", "check", "svc", "trace", "tui", "scan"):
        assert command in proc.stdout


def test_status_sample(kubectl) -> None:
    proc = checked(kubectl("proxydoctor", "status", "--sample"))
    assert "pdnode1" in proc.stdout and "iptables" in proc.stdout


def test_check_sample_reports_the_drift(kubectl) -> None:
    proc = kubectl("proxydoctor", "check", "--sample", "-o", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert "stale-endpoint" in [f["code"] for f in doc["findings"] if f["severity"] == "error"]
    text = kubectl("proxydoctor", "check", "--sample")
    assert text.returncode == 1 and "stale-endpoint" in text.stdout and "Traceback" not in text.stderr


def test_trace_sample(kubectl) -> None:
    proc = checked(kubectl("proxydoctor", "trace", "--dst", "10.96.100.10:80", "--sample"))
    assert "DNAT -> 10.244.0.1" in proc.stdout
    proc = checked(kubectl("proxydoctor", "trace", "--dst", "10.96.100.10:80", "--src", "172.30.0.2",
                           "--sample", "-o", "json"))
    outcomes = [o for r in json.loads(proc.stdout)["results"] for o in r["outcomes"]]
    assert outcomes and all(o["verdict"] == "dnat" for o in outcomes)


def test_bad_input_is_one_line_through_kubectl(kubectl) -> None:
    proc = kubectl("proxydoctor", "trace", "--dst", "nohost:80", "--sample")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_check_reads_the_api_with_the_bundled_client(netns, home: Path, krew_root: Path,
                                                     tmp_path: Path) -> None:
    """The bundled kubernetes client (without its asyncio part) against the test API server."""
    ns = netns("pd-dist-")
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "tests.serve_api",
                               str(STALE / "api.json")], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        assert line.startswith("PORT "), line
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": f"http://127.0.0.1:{line.split()[1]}"})
        proc = in_ns(ns, clean_env(home, krew_root / "bin"), "kubectl", "proxydoctor", "check", "--from",
                     str(STALE), "--kubeconfig", str(kubeconfig), "-o", "json")
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=10)
    assert proc.returncode == 1 and proc.stdout.startswith("{"), proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["sources"]["api"] == "ok"
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == ["stale-endpoint"]


def test_the_tui_starts_in_a_terminal_and_quits(netns, home: Path, krew_root: Path) -> None:
    """`kubectl proxydoctor tui --sample` on a real pseudo-terminal: the table appears, `q` quits, exit 0."""
    ns = netns("pd-dist-")
    env = clean_env(home, krew_root / "bin", COLUMNS="120", LINES="40")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(home)
        ip = shutil.which("ip") or "/usr/bin/ip"
        os.execv(ip, ["ip", "netns", "exec", ns, *env_i(env), "kubectl", "proxydoctor", "tui", "--sample"])
    screen, quit_sent, deadline = b"", False, time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # the terminal closed: the app exited
                    break
                if not data:
                    break
                screen += data
            text = ANSI.sub(b"", screen)
            if not quit_sent and b"10.96.100.30:80" in text and b"q Quit" in text and b"pdnode1" in text:
                os.write(fd, b"q")
                quit_sent = True
        assert quit_sent, ANSI.sub(b"", screen)[-2000:].decode(errors="replace")
        _, status = os.waitpid(pid, 0)
    finally:
        if not quit_sent:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"Traceback" not in screen


# -- the single file itself ---------------------------------------------------------------------------


def pythons(pattern: str) -> list[Path]:
    """Other Pythons on this machine (pyenv's), by version pattern such as "3.12" or "3.[6-9]"."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    return sorted(versions.glob(f"{pattern}.*/bin/python3"))


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_runs_on_newer_pythons_with_only_the_standard_library(built: Built, home: Path, version: str) -> None:
    python = next(iter(pythons(version)), None) or shutil.which(f"python{version}")
    if python is None:
        pytest.skip(f"no python{version} here")
    # -I -S: no site-packages at all, no environment: only the standard library and the file
    proc = subprocess.run([str(python), "-I", "-S", str(built.exe), "check", "--sample", "-o", "json"],
                          env=clean_env(home), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "stale-endpoint" in proc.stdout


def test_an_old_python_gets_one_line_and_exit_3(built: Built, home: Path) -> None:
    candidates = pythons("3.10") + pythons("3.[6-9]")
    if not candidates:
        pytest.skip("no Python older than 3.11 here")
    for python in candidates:
        proc = subprocess.run([str(python), "-I", "-S", str(built.exe), "--help"], env=clean_env(home),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3 and proc.stdout == ""
        assert proc.stderr.startswith("kubectl-proxydoctor: needs Python 3.11 or newer;"), proc.stderr
        assert len(proc.stderr.splitlines()) == 1


def test_first_runs_at_once_unpack_one_build(built: Built, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    runs = [subprocess.Popen([SYSTEM_PYTHON, str(built.exe), "--help"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read() if run.stderr else ""
    unpacked = [p.name for p in (tmp_path / ".cache" / "kubectl-proxydoctor").iterdir()]
    assert len(unpacked) == 1 and unpacked[0].startswith(f"{built.version}-"), unpacked  # no staging left


def test_without_a_writable_cache_it_unpacks_for_the_run_only(built: Built, tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = clean_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "not-a-dir" / "cache"), TMPDIR=str(scratch))
    proc = subprocess.run([SYSTEM_PYTHON, str(built.exe), "check", "--sample"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "stale-endpoint" in proc.stdout, proc.stderr
    assert list(scratch.iterdir()) == []  # the private copy is removed at exit


# -- pipx, and the start-up time against the installed package ------------------------------------------


# pipx's own pip (its "shared libraries" venv, ~10 s to make) is kept between runs next to the test
# tools; the venv `pipx install` makes for the wheel, and every dependency in it, are new each run.
PIPX_SHARED_LIBS = Path(sys.prefix) / "pipx-shared"


@pytest.fixture(scope="module")
def pipx_bin(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pipx install` of the built wheel into a fresh PIPX_HOME (pipx from the `test` extra)."""
    base = tmp_path_factory.mktemp("pipx")
    env = {**os.environ, "PIPX_HOME": str(base / "home"), "PIPX_BIN_DIR": str(base / "bin"),
           "PIPX_MAN_DIR": str(base / "man"), "PIPX_SHARED_LIBS": str(PIPX_SHARED_LIBS)}
    env.pop("VIRTUAL_ENV", None)
    checked(subprocess.run([sys.executable, "-m", "pipx", "install", "--python", SYSTEM_PYTHON,
                            str(built.wheel)], env=env, capture_output=True, text=True, timeout=900))
    return base / "bin"


def test_pipx_install_of_the_wheel(pipx_bin: Path, tmp_path: Path) -> None:
    exe = pipx_bin / "kubectl-proxydoctor"
    proc = subprocess.run([str(exe), "check", "--sample"], env=clean_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "stale-endpoint" in proc.stdout, proc.stderr
    assert checked(subprocess.run(["kubectl", "plugin", "list"], env=clean_env(tmp_path, pipx_bin),
                                  capture_output=True, text=True)).stdout.count(str(exe)) == 1


@pytest.mark.skipif(not os.environ.get("PROXYDOCTOR_BENCH"),
                    reason="a timing: `make bench` runs it (bench/bench_dist_startup.py), not make test")
def test_the_single_file_starts_within_1_5x_of_the_installed_package(pipx_bin: Path, built: Built,
                                                                     home: Path) -> None:
    """`--help`, both on the system python3, interleaved, after the single file's first (unpacking) run."""
    commands = {"pipx": [str(pipx_bin / "kubectl-proxydoctor"), "--help"],
                "single file": [SYSTEM_PYTHON, str(built.exe), "--help"]}
    env = clean_env(home)
    for command in commands.values():
        checked(subprocess.run(command, env=env, capture_output=True, text=True, timeout=300))
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(9):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    print("\n--help " + ", ".join(f"{n}: median {median[n]:.3f} s, min {min(v):.3f} s"
                                  for n, v in times.items()))
    assert median["single file"] <= 1.5 * median["pipx"]
