"""pytest fixtures around the test API server (tests/apiserver.py).

Use from a test module with ``from tests.api_fixtures import kube_api  # noqa: F401`` or load it
as a plugin (``pytest_plugins = ["tests.api_fixtures"]`` in tests/conftest.py).

    def test_live(kube_api):
        api = kube_api("tests/fixtures/iptables/healthy/api.json")
        state = read_cluster(kubeconfig=str(api.kubeconfig))
        assert api.server.count("/api/v1/services") == 1
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:  # importable both as tests.api_fixtures and as api_fixtures (tests/ on sys.path)
    from tests.apiserver import FakeApiServer, write_kubeconfig
except ImportError:  # pragma: no cover - depends on how pytest set sys.path
    from apiserver import FakeApiServer, write_kubeconfig  # type: ignore[no-redef]

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class KubeApi:
    """A started test API server and a kubeconfig that points the real client at it."""

    server: FakeApiServer
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.server.url


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key) made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "apiserver.crt", directory / "apiserver.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def api_server() -> Iterator[Callable[..., FakeApiServer]]:
    """Factory: ``api_server(api_json_path_or_doc, **opts)`` -> a started FakeApiServer."""
    started: list[FakeApiServer] = []

    def start(source: str | Path | dict | list, **opts) -> FakeApiServer:
        if isinstance(source, list):
            server = FakeApiServer(source, **opts)
        else:
            server = FakeApiServer.from_api_json(source, **opts)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def kube_api(api_server, tmp_path: Path) -> Callable[..., KubeApi]:
    """Factory: ``kube_api(api_json, token=None, namespace=None, **server_opts)`` -> KubeApi.

    Starts the server over an api.json (path, parsed List, or a list of objects) and writes a
    kubeconfig (context "test") pointing at it.
    """
    counter = iter(range(1_000_000))

    def make(source: str | Path | dict | list, *, token: str | None = None, namespace: str | None = None,
             **server_opts) -> KubeApi:
        server = api_server(source, token=token, **server_opts)
        path = tmp_path / f"kubeconfig-{next(counter)}"
        write_kubeconfig(path, {"test": server.url}, token=token, namespace=namespace,
                         ca_file=server_opts.get("certfile"))
        return KubeApi(server=server, kubeconfig=path)

    return make


@pytest.fixture
def api_kubeconfig(kube_api) -> Callable[..., Path]:
    """Factory: ``api_kubeconfig(api_json)`` -> the path of a kubeconfig for a started server."""

    def make(source: str | Path | dict | list, **opts) -> Path:
        return kube_api(source, **opts).kubeconfig

    return make
