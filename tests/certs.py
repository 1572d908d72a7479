"""Throw-away PKI for TLS tests: a CA, a server certificate and a client certificate as PEM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("localhost", "127.0.0.1", "relay.hubble-otlp.test")


@dataclass(frozen=True)
class Pki:
    ca_file: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca_file: str  # a CA that signed nothing here: for "wrong CA" tests


def make_pki(directory: Path) -> Pki:
    ca = trustme.CA()
    other_ca = trustme.CA()
    server = ca.issue_cert(*SERVER_NAMES)
    client = ca.issue_cert("hubble-otlp-client")

    def write(name: str, data: bytes) -> str:
        path = directory / name
        path.write_bytes(data)
        return str(path)

    return Pki(
        ca_file=write("ca.pem", ca.cert_pem.bytes()),
        server_cert=write("server.pem", b"".join(blob.bytes() for blob in server.cert_chain_pems)),
        server_key=write("server-key.pem", server.private_key_pem.bytes()),
        client_cert=write("client.pem", b"".join(blob.bytes() for blob in client.cert_chain_pems)),
        client_key=write("client-key.pem", client.private_key_pem.bytes()),
        other_ca_file=write("other-ca.pem", other_ca.cert_pem.bytes()),
    )
