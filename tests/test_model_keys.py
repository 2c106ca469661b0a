"""Endpoint and ServicePortName as named tuples: the order and the keys the views, checks and
renderers rely on (numeric address order, port after address, names by their four parts)."""

from __future__ import annotations

import random

from kubectl_proxydoctor.model import Endpoint, ServicePortName, ip_sort_key
from tests.test_fast_paths import _reference_key as _reference_ip_key  # ipaddress's order

ODD = ["10.0.0.9", "10.0.0.10", "9.255.255.255", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3",
       "256.0.0.1", "1.2.3.4 ", "fd00::1", "fd00::a", "::ffff:10.0.0.1", "fe80::1%eth0", "x", "", "١.2.3.4"]


def test_ip_sort_key_matches_ipaddress():
    for ip in ODD:
        assert ip_sort_key(ip) == _reference_ip_key(ip), ip


def test_endpoints_sort_numerically_then_by_port():
    rng = random.Random(7)
    eps = [Endpoint(ip, port) for ip in ODD for port in (8080, 80, 443)]
    rng.shuffle(eps)
    want = sorted(eps, key=lambda e: (_reference_ip_key(e.ip), e.port))
    assert sorted(eps, key=Endpoint.sort_key) == want
    assert sorted(eps) == want  # the < of Endpoint, not the tuple's string order
    assert Endpoint("10.0.0.9", 80) < Endpoint("10.0.0.10", 80)
    assert Endpoint("10.0.0.10", 80) > Endpoint("10.0.0.9", 80) >= Endpoint("10.0.0.9", 80)


def test_endpoint_text_and_identity():
    assert str(Endpoint("10.0.0.1", 80)) == "10.0.0.1:80"
    assert str(Endpoint("fd00::1", 80)) == "[fd00::1]:80"
    assert {Endpoint("10.0.0.1", 80), Endpoint("10.0.0.1", 80), Endpoint("10.0.0.1", 81)} == {
        Endpoint("10.0.0.1", 81), Endpoint("10.0.0.1", 80)}
    assert Endpoint(ip="10.0.0.1", port=80).ip == "10.0.0.1"


def test_service_port_names_order_by_their_four_parts():
    names = [ServicePortName("b", "a", "", "TCP"), ServicePortName("a", "z", "http", "UDP"),
             ServicePortName("a", "z", "http", "TCP"), ServicePortName("a", "b", "x", "TCP")]
    assert sorted(names) == sorted(names, key=lambda n: (n.namespace, n.name, n.port, n.protocol))
    name = ServicePortName("default", "web", "http", "TCP")
    assert (str(name), name.key, name.label, name.service) == (
        "default/web:http", "default/web:http/TCP", "default/web:http/TCP", "default/web")
    unclaimed = ServicePortName("", "10.96.0.5:80", "", "TCP")
    assert (unclaimed.service, unclaimed.label) == ("10.96.0.5:80", "10.96.0.5:80/TCP")
