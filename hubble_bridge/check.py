"""`hubble-otlp check`: is the Hubble server there, and what does it hold? (like `hubble status`)."""

from __future__ import annotations

import sys
from typing import TextIO

from hubble_bridge.api import observer_pb2, relay_pb2
from hubble_bridge.errors import BridgeError
from hubble_bridge.sources.relay import RelayClient
from hubble_bridge.tls import ClientTlsOptions

PROG = "hubble-otlp"


def run_check(
    target: str,
    tls: ClientTlsOptions | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    connect_timeout_s: float = 10.0,
) -> int:
    """Prints status and nodes and returns 0; one error line on `err` and 1 when the server cannot answer."""
    out = out or sys.stdout
    err = err or sys.stderr
    client: RelayClient | None = None
    try:
        client = RelayClient(target, tls, connect_timeout_s=connect_timeout_s)
        status = client.server_status()
        nodes = client.get_nodes()
    except BridgeError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return 1
    finally:
        if client is not None:
            client.close()
    out.write(format_status(target, status))
    out.write(format_nodes(nodes))
    return 0


def format_status(target: str, status: observer_pb2.ServerStatusResponse) -> str:
    used = f" ({100 * status.num_flows / status.max_flows:.2f}%)" if status.max_flows else ""
    lines = [
        f"Healthcheck (via {target}): Ok",
        f"Version: {status.version or 'unknown'}",
        f"Current/Max Flows: {status.num_flows:,}/{status.max_flows:,}{used}",
        f"Seen Flows: {status.seen_flows:,}",
        f"Flows/s: {status.flows_rate:.2f}",
        f"Uptime: {_duration(status.uptime_ns)}",
    ]
    if status.HasField("num_connected_nodes"):
        total = status.num_connected_nodes.value + status.num_unavailable_nodes.value
        lines.append(f"Connected Nodes: {status.num_connected_nodes.value}/{total}")
    if status.HasField("num_unavailable_nodes"):
        names = f" ({', '.join(status.unavailable_nodes)})" if status.unavailable_nodes else ""
        lines.append(f"Unavailable Nodes: {status.num_unavailable_nodes.value}{names}")
    return "\n".join(lines) + "\n"


def format_nodes(response: observer_pb2.GetNodesResponse) -> str:
    if not response.nodes:
        return "Nodes: none\n"
    rows = [("NAME", "STATUS", "UPTIME", "CURRENT/MAX-FLOWS", "SEEN", "VERSION", "TLS")]
    for node in response.nodes:
        state = relay_pb2.NodeState.Name(node.state).removeprefix("NODE_").capitalize()
        rows.append(
            (
                node.name,
                state,
                _duration(node.uptime_ns),
                f"{node.num_flows:,}/{node.max_flows:,}",
                f"{node.seen_flows:,}",
                node.version or "-",
                "yes" if node.tls.enabled else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    return "\n" + text + "\n"


def _duration(ns: int) -> str:
    seconds = ns // 1_000_000_000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
