"""TLS settings for gRPC: the client side (Relay, Hubble servers) and the replay server.

Certificates are read and checked when credentials are built, so a missing or
unreadable file is reported naming the option and the path instead of surfacing
later as an opaque handshake failure. Once TLS is asked for there is no
fallback to plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from hubble_bridge.errors import ConfigError


@dataclass
class ClientTlsOptions:
    """TLS towards Hubble Relay or a Hubble server; cert_file + key_file for mTLS."""

    enabled: bool = False
    ca_file: str | None = None  # PEM bundle that signed the server; None: the system roots
    cert_file: str | None = None  # client certificate (PEM) when the server wants mTLS
    key_file: str | None = None
    server_name: str | None = None  # name to verify instead of the address host

    @property
    def active(self) -> bool:
        # A configured certificate means the user wants TLS: never send it off in plaintext.
        return self.enabled or any((self.ca_file, self.cert_file, self.key_file))

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("tls: cert_file and key_file must be given together (client certificate)")
        return grpc.ssl_channel_credentials(
            root_certificates=_read_pem(self.ca_file, "tls.ca_file") if self.ca_file else None,
            private_key=_read_pem(self.key_file, "tls.key_file") if self.key_file else None,
            certificate_chain=_read_pem(self.cert_file, "tls.cert_file") if self.cert_file else None,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        if not self.server_name:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


@dataclass
class ServerTlsOptions:
    """TLS for the replay server; a client_ca_file turns on mTLS (a client certificate is required)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)

    def server_credentials(self) -> grpc.ServerCredentials:
        key = _read_pem(self.key_file, "tls.key_file")
        cert = _read_pem(self.cert_file, "tls.cert_file")
        client_ca = _read_pem(self.client_ca_file, "tls.client_ca_file") if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(key, cert)],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


def _read_pem(path: str | None, option: str) -> bytes:
    if not path:
        raise ConfigError(f"{option}: no file given")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{option}: {path} is not a PEM file")
    return data
