"""One listen-address parser for every server; `:port` is dual-stack, tried with IPv6 and IPv4 clients."""

from __future__ import annotations

import urllib.request

import grpc
import pytest

from hubble_bridge.api import observer_pb2, observer_pb2_grpc, peer_pb2, peer_pb2_grpc
from hubble_bridge.errors import ConfigError
from hubble_bridge.server.address import ListenAddress, ipv6_available, parse_listen
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.server.peer import PeerEntry, PeerServer
from hubble_bridge.server.store import EventStore
from hubble_bridge.sinks.http_server import HttpEndpoint

CLIENTS = ("[::1]", "127.0.0.1")


@pytest.fixture(autouse=True)
def _needs_ipv6() -> None:
    if not ipv6_available():
        pytest.skip("this host has no IPv6: the fallback to IPv4 is what runs here")


def test_one_parser_for_every_form() -> None:
    assert parse_listen(":9965") == ListenAddress("", 9965)
    assert parse_listen("[::1]:0") == ListenAddress("::1", 0)
    assert parse_listen("10.0.0.1:80") == ListenAddress("10.0.0.1", 80)
    assert parse_listen("unix:///run/h.sock") == ListenAddress("", 0, unix="unix:///run/h.sock")
    assert parse_listen(":4245").grpc_address() == "[::]:4245"  # every address, IPv4 included
    assert parse_listen(":9965").bind_host() == "::"
    for bad in ("9965", "::1:9965", "host:http", "h:70000", "a b:1", "unix://"):
        with pytest.raises(ConfigError, match=rf"invalid listen address {bad!r}"):
            parse_listen(bad)


def test_http_endpoint_on_port_only_answers_ipv6_and_ipv4_clients() -> None:
    endpoint = HttpEndpoint(":0", {"/healthz": lambda _h: (200, "text/plain", b"ok\n")})
    _, port = endpoint.start()
    try:
        for host in CLIENTS:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as response:
                assert response.read() == b"ok\n", host
    finally:
        endpoint.stop()


def test_http_endpoint_on_one_address_answers_only_there() -> None:
    endpoint = HttpEndpoint("[::1]:0", {"/healthz": lambda _h: (200, "text/plain", b"ok\n")})
    _, port = endpoint.start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        endpoint.stop()


def test_grpc_servers_on_port_only_answer_ipv6_and_ipv4_clients() -> None:
    observer = ObserverServer(EventStore(), ":0")
    peers = PeerServer(":0", [PeerEntry("node-a", "10.0.0.1:4244")])
    observer_port = observer.start().rsplit(":", 1)[1]
    peer_port = peers.start().rsplit(":", 1)[1]
    try:
        for host in CLIENTS:
            with grpc.insecure_channel(f"{host}:{observer_port}") as channel:
                status = observer_pb2_grpc.ObserverStub(channel).ServerStatus(
                    observer_pb2.ServerStatusRequest(), timeout=10
                )
                assert status.num_flows == 0, host
            with grpc.insecure_channel(f"{host}:{peer_port}") as channel:
                stream = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=30)
                assert next(stream).name == "node-a", host
                stream.cancel()
    finally:
        observer.stop(0)
        peers.stop(0)
