"""TLS and mTLS between the relay client and the Observer server, over real gRPC on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.server.observer import VERSION, ObserverServer
from hubble_bridge.server.store import EventStore
from hubble_bridge.sources.relay import RelayClient
from hubble_bridge.tls import ClientTlsOptions, ServerTlsOptions
from tests.certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def serve(tls: ServerTlsOptions | None) -> Iterator[str]:
    server = ObserverServer(EventStore(), "127.0.0.1:0", tls)
    yield server.start()
    server.stop(0)


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[str]:
    yield from serve(ServerTlsOptions(pki.server_cert, pki.server_key))


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[str]:
    yield from serve(ServerTlsOptions(pki.server_cert, pki.server_key, client_ca_file=pki.ca_file))


@pytest.fixture(scope="module")
def plain_server() -> Iterator[str]:
    yield from serve(None)


def status_version(address: str, tls: ClientTlsOptions | None) -> str:
    client = RelayClient(address, tls, connect_timeout_s=5)
    try:
        return client.server_status().version
    finally:
        client.close()


def one_line_error(address: str, tls: ClientTlsOptions | None) -> str:
    with pytest.raises(BridgeError) as caught:
        status_version(address, tls)
    message = str(caught.value)
    assert "\n" not in message and address in message
    return message


def test_tls_with_the_signing_ca(pki: Pki, tls_server: str) -> None:
    assert status_version(tls_server, ClientTlsOptions(enabled=True, ca_file=pki.ca_file)) == VERSION


def test_server_name_override_is_verified(pki: Pki, tls_server: str) -> None:
    good = ClientTlsOptions(enabled=True, ca_file=pki.ca_file, server_name="relay.hubble-otlp.test")
    assert status_version(tls_server, good) == VERSION
    wrong = ClientTlsOptions(enabled=True, ca_file=pki.ca_file, server_name="elsewhere.example")
    assert "does not match the server name" in one_line_error(tls_server, wrong)


def test_tls_scheme_and_a_ca_file_alone_turn_tls_on(pki: Pki, tls_server: str) -> None:
    # Asking for a CA but forgetting `enabled` must not silently talk plaintext.
    assert status_version(tls_server, ClientTlsOptions(ca_file=pki.ca_file)) == VERSION
    message = one_line_error(f"tls://{tls_server}", None)  # system roots do not know the test CA
    assert message.startswith(f"TLS handshake with tls://{tls_server} failed: certificate verify failed")


def test_wrong_ca_fails_clearly(pki: Pki, tls_server: str) -> None:
    message = one_line_error(tls_server, ClientTlsOptions(enabled=True, ca_file=pki.other_ca_file))
    reason = "certificate verify failed: unable to get local issuer certificate"
    assert message == f"TLS handshake with {tls_server} failed: {reason}"


def test_mtls_with_a_client_certificate(pki: Pki, mtls_server: str) -> None:
    tls = ClientTlsOptions(
        enabled=True, ca_file=pki.ca_file, cert_file=pki.client_cert, key_file=pki.client_key
    )
    assert status_version(mtls_server, tls) == VERSION


def test_mtls_without_a_client_certificate_fails_clearly(pki: Pki, mtls_server: str) -> None:
    message = one_line_error(mtls_server, ClientTlsOptions(enabled=True, ca_file=pki.ca_file))
    assert message.startswith(f"TLS handshake with {mtls_server} failed")
    assert "client certificate" in message


def test_plaintext_client_against_tls_server(tls_server: str) -> None:
    message = one_line_error(tls_server, None)
    assert message.startswith(f"cannot reach Hubble Relay at {tls_server}: the server closed the connection")


def test_tls_client_against_plaintext_server(pki: Pki, plain_server: str) -> None:
    message = one_line_error(plain_server, ClientTlsOptions(enabled=True, ca_file=pki.ca_file))
    assert (
        message
        == f"TLS handshake with {plain_server} failed: the server does not speak TLS (try without TLS)"
    )


def test_missing_and_unreadable_files_name_option_and_path(tmp_path: Path, pki: Pki) -> None:
    missing = str(tmp_path / "absent.pem")
    with pytest.raises(ConfigError, match=f"tls.ca_file: cannot read {missing}: No such file"):
        ClientTlsOptions(enabled=True, ca_file=missing).channel_credentials()
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match=f"tls.key_file: {not_pem} is not a PEM file"):
        ServerTlsOptions(pki.server_cert, str(not_pem)).server_credentials()
    with pytest.raises(ConfigError, match=f"tls.client_ca_file: cannot read {missing}"):
        ServerTlsOptions(pki.server_cert, pki.server_key, client_ca_file=missing).server_credentials()
    with pytest.raises(ConfigError, match="cert_file and key_file must be given together"):
        ClientTlsOptions(enabled=True, cert_file=pki.client_cert).channel_credentials()
    with pytest.raises(ConfigError, match=r"tls\.ca_file"):
        RelayClient("127.0.0.1:4245", ClientTlsOptions(enabled=True, ca_file=missing))


def test_bad_server_tls_files_fail_at_start(tmp_path: Path, pki: Pki) -> None:
    server = ObserverServer(
        EventStore(), "127.0.0.1:0", ServerTlsOptions(str(tmp_path / "none.pem"), pki.server_key)
    )
    with pytest.raises(ConfigError, match=r"tls\.cert_file: cannot read"):
        server.start()
    server.stop(0)


def test_channel_options() -> None:
    assert ClientTlsOptions(enabled=True).channel_options() == []
    assert ClientTlsOptions(enabled=True, server_name="relay.example").channel_options() == [
        ("grpc.ssl_target_name_override", "relay.example")
    ]
