"""collect.api.read_cluster against the test API server, with the real kubernetes client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kubectl_proxydoctor.collect.api import read_cluster
from kubectl_proxydoctor.errors import ProxyDoctorError
from tests import api_fixtures
from tests.apiserver import FakeApiServer, write_kubeconfig

FIXTURES = Path(__file__).parent / "fixtures"
HEALTHY = FIXTURES / "iptables" / "healthy" / "api.json"

# the shared fixtures (the lead may load tests.api_fixtures as a plugin instead)
api_server = api_fixtures.api_server
kube_api = api_fixtures.kube_api
make_self_signed_cert = api_fixtures.make_self_signed_cert


@pytest.fixture(autouse=True)
def _no_ambient_kubeconfig(monkeypatch, tmp_path):
    """Never let a developer's ~/.kube/config or KUBECONFIG leak into a test."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _warm_client() -> None:
    """Import the client's API classes first: timing must measure the request, not imports."""
    from kubernetes import client

    assert client.CoreV1Api and client.AppsV1Api and client.DiscoveryV1Api


def _services(n: int) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": f"svc-{i:05d}", "namespace": f"ns-{i % 7}"},
         "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "ports": [{"port": 80, "protocol": "TCP"}]}}
        for i in range(n)
    ]


def _key(obj: dict) -> tuple:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def test_reads_every_object_as_the_fixture_holds_it(kube_api):
    api = kube_api(HEALTHY)
    state = read_cluster(kubeconfig=api.kubeconfig, node_name="pdnode1")  # a Path works too
    fixture = json.loads(HEALTHY.read_text())["items"]
    assert sorted(map(_key, state.to_list()["items"])) == sorted(map(_key, fixture))
    by_key = {_key(o): o for o in state.to_list()["items"]}
    for obj in fixture:  # field for field, including kind/apiVersion a list response leaves out
        assert by_key[_key(obj)] == obj
    assert state.sources == {
        "list services": "ok",
        "list endpointslices": "ok",
        "get nodes/pdnode1": "ok",
        "get configmaps/kube-system/kube-proxy": "ok",
        "get daemonsets/kube-system/kube-proxy": "ok",
        "get daemonsets/kube-system/cilium": "ok (not found)",
        "get configmaps/kube-system/cilium-config": "ok (not found)",
    }
    assert state.node("pdnode1") is not None


def test_pagination_really_pages_10k_services(kube_api):
    api = kube_api(_services(10_000))
    state = read_cluster(kubeconfig=str(api.kubeconfig), page_size=500)
    assert len(state.services) == 10_000
    assert len({(s["metadata"]["namespace"], s["metadata"]["name"]) for s in state.services}) == 10_000
    calls = [q for _, path, q in api.server.requests if path == "/api/v1/services"]
    assert len(calls) == 20
    assert all(q.get("limit") == "500" for q in calls)
    assert "continue" not in calls[0] and all("continue" in q for q in calls[1:])


def test_page_size_is_honoured_on_small_lists(kube_api):
    api = kube_api(HEALTHY)
    state = read_cluster(kubeconfig=str(api.kubeconfig), page_size=3)
    assert len(state.services) == 16 and len(state.endpointslices) == 14
    assert api.server.count("/api/v1/services") == 6  # ceil(16 / 3)
    assert api.server.count("/apis/discovery.k8s.io/v1/endpointslices") == 5  # ceil(14 / 3)


def test_expired_continue_token_falls_back_to_one_full_list(kube_api):
    api = kube_api(_services(1200))
    api.server.expire_continue = True
    state = read_cluster(kubeconfig=str(api.kubeconfig), page_size=500)
    assert len(state.services) == 1200 and state.sources["list services"] == "ok"
    calls = [q for _, path, q in api.server.requests if path == "/api/v1/services"]
    assert [("continue" in q, "limit" in q) for q in calls] == [(False, True), (True, True), (False, False)]


def test_one_namespace(kube_api):
    api = kube_api(HEALTHY)
    state = read_cluster(kubeconfig=str(api.kubeconfig), namespace="shop")
    assert {s["metadata"]["name"] for s in state.services} == {"cart"}
    assert all(s["metadata"]["namespace"] == "shop" for s in state.endpointslices)
    assert state.endpointslices
    assert api.server.count("/api/v1/namespaces/shop/services") == 1
    assert api.server.count("/api/v1/services") == 0


def test_forbidden_endpointslices_says_which_verb_on_which_resource(kube_api):
    api = kube_api(HEALTHY)
    api.server.forbid("list", "endpointslices")
    state = read_cluster(kubeconfig=str(api.kubeconfig), node_name="pdnode1")
    assert state.sources["list endpointslices"] == (
        "forbidden: list endpointslices.discovery.k8s.io in all namespaces (RBAC)")
    assert state.endpointslices == []
    assert state.sources["list services"] == "ok" and len(state.services) == 16


def test_forbidden_in_one_namespace_and_on_gets(kube_api):
    api = kube_api(HEALTHY)
    api.server.forbid("list", "services", "shop")
    api.server.forbid("get", "nodes")
    api.server.forbid("get", "configmaps")
    state = read_cluster(kubeconfig=str(api.kubeconfig), namespace="shop", node_name="pdnode1")
    assert state.sources["list services"] == "forbidden: list services in namespace shop (RBAC)"
    assert state.sources["get nodes/pdnode1"] == "forbidden: get nodes pdnode1 (RBAC)"
    assert state.sources["get configmaps/kube-system/kube-proxy"] == (
        "forbidden: get configmaps kube-system/kube-proxy (RBAC)")
    assert state.sources["get daemonsets/kube-system/kube-proxy"] == "ok"
    assert state.nodes == [] and state.configmaps == [] and len(state.daemonsets) == 1


def test_unreachable_returns_quickly_and_says_so(api_server, tmp_path):
    server = api_server(HEALTHY)
    url = server.url
    server.stop()  # nothing listens on that port any more
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"gone": url})
    _warm_client()
    started = time.monotonic()
    state = read_cluster(kubeconfig=str(kubeconfig), node_name="pdnode1", timeout=2)
    assert time.monotonic() - started < 2
    assert state.sources["list services"] == f"unreachable: {url}: connection refused"
    assert set(state.sources.values()) == {f"unreachable: {url}: connection refused"}
    assert state.services == [] and state.nodes == []


def test_unresponsive_server_times_out(tmp_path):
    import socket

    sock = socket.socket()  # accepts TCP connections (backlog) but never answers HTTP
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        kubeconfig = write_kubeconfig(tmp_path / "kc", {"slow": url})
        _warm_client()
        started = time.monotonic()
        state = read_cluster(kubeconfig=str(kubeconfig), timeout=0.5)
        assert time.monotonic() - started < 3
        assert state.sources["list services"] == f"unreachable: {url}: timed out after 0.5s"
    finally:
        sock.close()


def test_kubeconfig_variable_with_two_files_is_merged(api_server, tmp_path, monkeypatch):
    first, second = api_server(HEALTHY), api_server(_services(3))
    a = write_kubeconfig(tmp_path / "a.yaml", {"alpha": first.url})
    b = write_kubeconfig(tmp_path / "b.yaml", {"beta": second.url, "alpha": "http://127.0.0.1:9"},
                         current="beta")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'missing.yaml'}:{b}")
    # first file wins: its current-context, and its "alpha" over the second file's
    state = read_cluster()
    assert len(state.services) == 16 and first.count("/api/v1/services") == 1
    assert second.count("/") == 0
    # a context only the second file defines
    state = read_cluster(context="beta")
    assert [s["metadata"]["name"] for s in state.services] == ["svc-00000", "svc-00001", "svc-00002"]
    assert second.count("/api/v1/services") == 1


def test_context_picks_the_cluster(api_server, tmp_path):
    prod, staging = api_server(HEALTHY), api_server(_services(2))
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"prod": prod.url, "staging": staging.url})
    state = read_cluster(kubeconfig=str(kubeconfig), context="staging")
    assert len(state.services) == 2 and prod.count("/") == 0
    state = read_cluster(kubeconfig=str(kubeconfig))  # current-context: prod
    assert len(state.services) == 16


def test_explicit_kubeconfig_beats_the_variable(api_server, tmp_path, monkeypatch):
    wanted, other = api_server(HEALTHY), api_server(_services(1))
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "env", {"env": other.url})))
    explicit = write_kubeconfig(tmp_path / "explicit", {"x": wanted.url})
    assert len(read_cluster(kubeconfig=str(explicit)).services) == 16
    assert other.count("/") == 0


def test_bearer_token_from_kubeconfig_and_rejected_token(kube_api, tmp_path):
    api = kube_api(HEALTHY, token="s3cret")
    state = read_cluster(kubeconfig=str(api.kubeconfig))
    assert state.sources["list services"] == "ok"
    assert set(api.server.auth_headers) == {"Bearer s3cret"}
    bad = write_kubeconfig(tmp_path / "bad", {"x": api.url}, token="wrong")
    state = read_cluster(kubeconfig=str(bad))
    assert state.sources["list services"] == (
        "unauthorized: list services in all namespaces: the API server rejected the credentials")


def test_in_cluster_config_with_token_and_ca(api_server, tmp_path, monkeypatch):
    cert, key = make_self_signed_cert(tmp_path)
    server = api_server(HEALTHY, token="pod-token", certfile=cert, keyfile=key)
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_text(cert.read_text())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    state = read_cluster(node_name="pdnode1", serviceaccount_dir=str(sa))
    assert len(state.services) == 16 and state.sources["get nodes/pdnode1"] == "ok"
    assert {h.lower() for h in server.auth_headers} == {"bearer pod-token"}


def test_in_cluster_without_token_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    with pytest.raises(ProxyDoctorError, match="in-cluster config"):
        read_cluster(serviceaccount_dir=str(tmp_path / "nothing"))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("clusters: [oops", "not valid YAML"),
        ("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\ncurrent-context: ''\n",
         "no current-context"),
        ("- just\n- a list\n", "cannot load kubeconfig"),
    ],
)
def test_unloadable_kubeconfig_raises_the_tools_error(tmp_path, content, match):
    path = tmp_path / "kc"
    path.write_text(content)
    with pytest.raises(ProxyDoctorError, match=match):
        read_cluster(kubeconfig=str(path))


def test_missing_kubeconfig_unknown_context_and_no_credentials(tmp_path, monkeypatch):
    with pytest.raises(ProxyDoctorError, match="no such file"):
        read_cluster(kubeconfig=str(tmp_path / "absent"))
    kubeconfig = write_kubeconfig(tmp_path / "kc", {"prod": "http://127.0.0.1:9"})
    with pytest.raises(ProxyDoctorError, match="context 'nope' not found"):
        read_cluster(kubeconfig=str(kubeconfig), context="nope")
    with pytest.raises(ProxyDoctorError, match="no Kubernetes credentials"):
        read_cluster()


def test_fake_server_answers_like_the_api(api_server):
    import urllib.request
    from urllib.error import HTTPError

    server: FakeApiServer = api_server(HEALTHY)
    server.forbid("list", "endpointslices")
    with urllib.request.urlopen(f"{server.url}/version") as r:
        assert json.load(r)["gitVersion"] == "v1.30.3"
    with pytest.raises(HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/apis/discovery.k8s.io/v1/endpointslices")
    body = json.load(e.value)
    assert e.value.code == 403 and body["kind"] == "Status" and body["reason"] == "Forbidden"
    with pytest.raises(HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/api/v1/namespaces/kube-system/configmaps/absent")
    assert e.value.code == 404 and json.load(e.value)["reason"] == "NotFound"
    with pytest.raises(HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/api/v1/services?continue=garbage&limit=1")
    assert e.value.code == 400


def test_tls_without_the_right_ca_is_reported_and_skip_verify_is_quiet(api_server, tmp_path, recwarn):
    cert, key = make_self_signed_cert(tmp_path)
    server = api_server(HEALTHY, certfile=cert, keyfile=key)
    state = read_cluster(kubeconfig=str(write_kubeconfig(tmp_path / "no-ca", {"x": server.url})))
    assert state.sources["list services"].startswith(f"unreachable: {server.url}: TLS error: ")
    assert "CERTIFICATE_VERIFY_FAILED" in state.sources["list services"]
    state = read_cluster(kubeconfig=str(write_kubeconfig(tmp_path / "ca", {"x": server.url}, ca_file=cert)))
    assert len(state.services) == 16
    insecure = tmp_path / "insecure"
    insecure.write_text((tmp_path / "no-ca").read_text().replace(
        f"server: {server.url}", f"server: {server.url}\n    insecure-skip-tls-verify: true"))
    state = read_cluster(kubeconfig=str(insecure))
    assert len(state.services) == 16
    assert not [w for w in recwarn if "Unverified HTTPS" in str(w.message)]


def test_kubeconfig_with_a_missing_ca_file_or_a_bad_server_url(tmp_path):
    with pytest.raises(ProxyDoctorError, match="does not exist"):
        read_cluster(kubeconfig=str(write_kubeconfig(tmp_path / "a", {"x": "https://127.0.0.1:9"},
                                                     ca_file=tmp_path / "absent.crt")))
    with pytest.raises(ProxyDoctorError, match="server 'not a url' is not an http"):
        read_cluster(kubeconfig=str(write_kubeconfig(tmp_path / "b", {"x": "not a url"})))


def test_server_errors_are_reported_per_request(kube_api):
    api = kube_api(HEALTHY)
    api.server.failures["endpointslices"] = 500
    api.server.failures["daemonsets"] = 429
    state = read_cluster(kubeconfig=str(api.kubeconfig))
    assert state.sources["list endpointslices"] == (
        "error: list endpointslices.discovery.k8s.io in all namespaces: HTTP 500 injected failure 500 for "
        "endpointslices")
    assert state.sources["get daemonsets/kube-system/kube-proxy"].startswith(
        "error: get daemonsets.apps kube-system/kube-proxy: HTTP 429")
    assert state.sources["list services"] == "ok" and len(state.services) == 16


class _FlakyServer(FakeApiServer):
    """Fails the second page of the services list; answers a JSON string for endpointslices."""

    def handle(self, method, raw_path, authorization):
        if raw_path.startswith("/api/v1/services") and "continue=" in raw_path:
            self.requests.append((method, raw_path.split("?")[0], {}))
            return 500, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                         "message": "etcd timeout", "reason": "InternalError"}
        if raw_path.startswith("/apis/discovery.k8s.io/v1/endpointslices"):
            return 200, "<html>proxy error</html>"
        return super().handle(method, raw_path, authorization)


def test_a_list_failing_half_way_returns_nothing(tmp_path):
    with _FlakyServer(_services(30)) as server:
        kubeconfig = write_kubeconfig(tmp_path / "kc", {"x": server.url})
        state = read_cluster(kubeconfig=str(kubeconfig), page_size=10)
    assert state.services == []  # never half a list
    assert state.sources["list services"] == "error: list services in all namespaces: HTTP 500 etcd timeout"
    assert state.endpointslices == []
    assert state.sources["list endpointslices"] == (
        "error: list endpointslices.discovery.k8s.io in all namespaces: the API server sent something that "
        "is not a list")


def test_paging_returns_every_object_once_in_order_for_any_limit(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    with FakeApiServer(_services(57)) as server:
        kubeconfig = str(write_kubeconfig(tmp_path / "kc", {"x": server.url}))
        want = sorted((s["metadata"]["namespace"], s["metadata"]["name"]) for s in _services(57))

        @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.integers(min_value=1, max_value=80))
        def check(limit: int) -> None:
            before = server.count("/api/v1/services")
            state = read_cluster(kubeconfig=kubeconfig, page_size=limit)
            got = [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in state.services]
            assert got == want
            assert server.count("/api/v1/services") - before == max(1, -(-57 // limit))

        check()
