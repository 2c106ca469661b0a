"""The test API server itself (tests/apiserver.py): routes, paging, Status objects, auth."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from urllib.error import HTTPError

import pytest

from tests import api_fixtures
from tests.apiserver import FakeApiServer

api_server = api_fixtures.api_server
HEALTHY = Path(__file__).parent / "fixtures" / "iptables" / "healthy" / "api.json"


def get(server: FakeApiServer, path: str, token: str | None = None, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.load(r)
    except HTTPError as e:
        return e.code, json.load(e)


def test_routes(api_server):
    server = api_server(HEALTHY)
    code, body = get(server, "/api/v1/namespaces/shop/services")
    assert code == 200 and body["kind"] == "ServiceList" and body["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in body["items"]] == ["cart"]
    assert "kind" not in body["items"][0]  # like a real list response
    code, body = get(server, "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices")
    assert code == 200 and body["kind"] == "EndpointSliceList" and body["items"]
    code, body = get(server, "/api/v1/nodes/pdnode1")
    assert code == 200 and body["kind"] == "Node"
    code, body = get(server, "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy")
    assert code == 200 and body["kind"] == "DaemonSet"
    code, body = get(server, "/api/v1/namespaces/kube-system/configmaps/kube-proxy")
    assert code == 200 and "config.conf" in body["data"]
    assert get(server, "/version")[1]["gitVersion"] == "v1.30.3"


@pytest.mark.parametrize("path", [
    "/apis/apps/v1/services",  # wrong group for the resource
    "/api/v1/namespaces/x/nodes",  # nodes are cluster-scoped
    "/api/v1/widgets",
    "/healthz/nothing",
])
def test_unknown_paths_are_404_status(api_server, path):
    code, body = get(api_server(HEALTHY), path)
    assert code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"


def test_paging_tokens_and_remaining_count(api_server):
    server = api_server(HEALTHY)
    names, token, pages = [], None, 0
    while True:
        path = "/api/v1/services?limit=5" + (f"&continue={token}" if token else "")
        code, body = get(server, path)
        assert code == 200
        pages += 1
        names += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]]
        token = body["metadata"].get("continue")
        if not token:
            assert "remainingItemCount" not in body["metadata"]
            break
        assert body["metadata"]["remainingItemCount"] == 16 - len(names)
    assert pages == 4 and len(names) == 16 and names == sorted(names)
    assert server.count("/api/v1/services") == 4
    server.expire_continue = True
    code, body = get(server, f"/api/v1/services?limit=5&continue={token or 'x'}")
    assert code == 410 and body["reason"] == "Expired"


def test_forbidden_status_names_verb_resource_and_scope(api_server):
    server = api_server(HEALTHY)
    server.forbid("list", "endpointslices", "shop")
    server.forbid("get", "configmaps")
    code, body = get(server, "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices")
    assert code == 403 and body["reason"] == "Forbidden"
    assert 'cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "shop"' \
        in body["message"]
    assert get(server, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")[0] == 200
    code, body = get(server, "/api/v1/namespaces/kube-system/configmaps/kube-proxy")
    assert code == 403 and body["details"]["name"] == "kube-proxy"
    with pytest.raises(ValueError):
        server.forbid("list", "widgets")


def test_token_auth_and_read_only(api_server):
    server = api_server(HEALTHY, token="t0k")
    assert get(server, "/api/v1/services")[0] == 401
    assert get(server, "/api/v1/services", token="t0k")[0] == 200
    assert get(server, "/api/v1/services", token="t0k", method="DELETE")[0] == 405
    assert server.auth_headers[:2] == [None, "Bearer t0k"]


def test_objects_added_later_are_served(api_server):
    server = api_server([])
    assert get(server, "/api/v1/services")[1]["items"] == []
    server.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "n"}})
    server.objects["services"].append({"metadata": {"name": "b", "namespace": "n"}})
    assert [i["metadata"]["name"] for i in get(server, "/api/v1/services")[1]["items"]] == ["a", "b"]
    server.objects["services"].pop(0)
    assert [i["metadata"]["name"] for i in get(server, "/api/v1/services")[1]["items"]] == ["b"]
    with pytest.raises(ValueError):
        server.add({"kind": "Widget", "metadata": {"name": "w"}})
