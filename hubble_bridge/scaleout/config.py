"""ScaleOutConfig: which streams to read (relays or the nodes behind a peer service) and worker settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.sources.relay import parse_target
from hubble_bridge.tls import ClientTlsOptions


@dataclass
class ScaleOutConfig:
    relays: list[str] = field(default_factory=list)  # several Relays / Hubble servers: one stream each
    peers: str = ""  # a peer.Peer service: one stream per node (e.g. unix:///var/run/cilium/hubble.sock)
    peers_tls: ClientTlsOptions = field(default_factory=ClientTlsOptions)  # to the peer service only
    snapshot_interval_s: float = 1.0  # how often workers send metric snapshots to the parent
    restart_backoff_max_s: float = 30.0
    stop_timeout_s: float = 30.0  # then workers that did not finish are killed

    def validate(self) -> None:
        problems: list[str] = []
        if bool(self.relays) == bool(self.peers):
            problems.append("scale-out: give either relays or a peer service address, not both or neither")
        for target in [*self.relays, *([self.peers] if self.peers else [])]:
            try:
                parse_target(target)
            except BridgeError as exc:
                problems.append(str(exc))
        if len(set(self.relays)) != len(self.relays):
            problems.append("scale-out: a relay address is given twice (its flows would count twice)")
        if self.snapshot_interval_s <= 0 or self.restart_backoff_max_s <= 0 or self.stop_timeout_s <= 0:
            problems.append("scale-out: intervals and timeouts must be positive")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
