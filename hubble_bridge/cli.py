"""`hubble-otlp`: parse the command line, build configuration, call one entry point.

Every subcommand's work lives elsewhere; errors a user can act on (BridgeError)
are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hubble_bridge import __version__
from hubble_bridge.errors import BridgeError

PROG = "hubble-otlp"

# gRPC's C core prints its own lines for failures we already report in one clear line (a TLS handshake
# that fails, a peer that goes away); keep its output to real errors unless the user asks for more.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _add_client_tls(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS to Hubble Relay (names as in the hubble CLI)")
    g.add_argument("--tls", action="store_true", default=None, help="use TLS to connect to the server")
    g.add_argument("--tls-ca-cert-files", metavar="FILE", help="CA certificate to verify the server with")
    g.add_argument("--tls-client-cert-file", metavar="FILE", help="client certificate for mTLS")
    g.add_argument("--tls-client-key-file", metavar="FILE", help="client key for mTLS")
    g.add_argument("--tls-server-name", metavar="NAME", help="name expected in the server's certificate")


def _client_tls_layer(args: argparse.Namespace) -> dict[str, Any]:
    tls: dict[str, Any] = {}
    for flag, key in (
        ("tls_ca_cert_files", "ca_file"),
        ("tls_client_cert_file", "cert_file"),
        ("tls_client_key_file", "key_file"),
        ("tls_server_name", "server_name"),
    ):
        if getattr(args, flag, None):
            tls[key] = getattr(args, flag)
            tls["enabled"] = True
    if getattr(args, "tls", None):
        tls["enabled"] = True
    return tls


def _add_server_tls(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS for the served Observer API")
    g.add_argument("--tls-server-cert-file", metavar="FILE", help="server certificate (enables TLS)")
    g.add_argument("--tls-server-key-file", metavar="FILE", help="server key")
    g.add_argument("--tls-client-ca-files", metavar="FILE", help="CA for client certificates (enables mTLS)")


def _server_tls(args: argparse.Namespace) -> Any:
    from hubble_bridge.tls import ServerTlsOptions

    if not (args.tls_server_cert_file or args.tls_server_key_file or args.tls_client_ca_files):
        return None
    if not (args.tls_server_cert_file and args.tls_server_key_file):
        raise BridgeError("--tls-server-cert-file and --tls-server-key-file go together")
    return ServerTlsOptions(args.tls_server_cert_file, args.tls_server_key_file, args.tls_client_ca_files)


def _add_export_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export")
    g.add_argument("--otlp-endpoint", metavar="URL", help="OTLP endpoint (default http://localhost:4317)")
    g.add_argument("--otlp-protocol", choices=["grpc", "http/protobuf"])
    g.add_argument(
        "--otlp-header", action="append", metavar="K=V", help="header on every export (repeatable)"
    )
    g.add_argument(
        "--otlp-insecure", action="store_true", default=None, help="plaintext to the OTLP endpoint"
    )
    g.add_argument("--otlp-ca", metavar="FILE", help="CA certificate for the OTLP endpoint")
    g.add_argument("--otlp-cert", metavar="FILE", help="client certificate for mTLS to the OTLP endpoint")
    g.add_argument("--otlp-key", metavar="FILE", help="client key for mTLS to the OTLP endpoint")
    g.add_argument("--otlp-compression", choices=["gzip", "none"])
    g.add_argument("--no-otlp", action="store_true", help="do not export over OTLP (file or Prometheus only)")
    g.add_argument(
        "--output",
        metavar="FILE",
        help="also write OTLP JSON lines (Collector file format); with --workers, worker i writes its spans "
        "and logs to FILE.worker<i>",
    )
    g.add_argument("--metrics-listen", metavar="ADDR", help="serve Prometheus /metrics on host:port")
    g.add_argument("--health-listen", metavar="ADDR", help="serve /healthz and /readyz on host:port")
    g.add_argument("--cluster-name", help="k8s.cluster.name for flows that do not carry one")
    g.add_argument(
        "--metric",
        action="append",
        metavar="FAMILY[:OPTS]",
        help="Hubble metric family with Hubble's options, e.g. 'drop:sourceContext=namespace' "
        "(repeatable; replaces the default set)",
    )
    g.add_argument("--l3l4-spans", action="store_true", default=None, help="also emit a span per L3/L4 flow")
    g.add_argument("--log-all-flows", action="store_true", default=None, help="a log record for every flow")
    g.add_argument("--no-traces", action="store_true")
    g.add_argument("--no-metrics", action="store_true")
    g.add_argument("--no-logs", action="store_true")
    g.add_argument("--config", metavar="FILE", help="YAML configuration (flags > env > file > defaults)")
    g.add_argument("--print-config", action="store_true", help="print the effective configuration and exit")


def _flag_layer(args: argparse.Namespace, problems: list[str]) -> dict[str, Any]:
    """Only the flags the user gave, as a config layer; malformed flags go to `problems`."""

    def collected(parse: Any, *parse_args: str) -> Any:
        try:
            return parse(*parse_args)
        except BridgeError as exc:
            problems.append(str(exc))
            return None

    otlp: dict[str, Any] = {}
    for flag, key in (
        ("otlp_endpoint", "endpoint"),
        ("otlp_protocol", "protocol"),
        ("otlp_insecure", "insecure"),
        ("otlp_ca", "ca_file"),
        ("otlp_cert", "cert_file"),
        ("otlp_key", "key_file"),
        ("otlp_compression", "compression"),
    ):
        if getattr(args, flag, None) is not None:
            otlp[key] = getattr(args, flag)
    if args.otlp_header:
        pairs = [collected(_key_value, h, "--otlp-header") for h in args.otlp_header]
        otlp["headers"] = dict(p for p in pairs if p is not None)
    export: dict[str, Any] = {}
    if args.no_otlp:
        export["otlp"] = False
    if args.output:
        export["output_file"] = args.output
    for signal in ("traces", "metrics", "logs"):
        if getattr(args, f"no_{signal}"):
            export[signal] = False
    layer: dict[str, Any] = {}
    source: dict[str, Any] = {}
    # A source given on the command line replaces one from the environment or the file.
    relays = getattr(args, "relay", None) or []
    if len(relays) == 1:
        source["relay"] = relays[0]
        source["files"] = []
    elif relays:
        layer["scaleout"] = {"relays": relays}
        source["relay"], source["files"] = "", []
    if getattr(args, "peers", None):
        layer["scaleout"] = {"peers": args.peers}
        source["relay"], source["files"] = "", []
    if getattr(args, "workers", None):
        layer["workers"] = args.workers
    if getattr(args, "file", None):
        source["files"] = args.file
        source["relay"] = ""
    if getattr(args, "follow", None):
        source["follow"] = True
    for key in ("since", "number", "first", "reader_process"):
        if getattr(args, key, None):
            source[key] = getattr(args, key)
    for name in ("allow", "deny"):
        values = getattr(args, name, None)
        if values:
            parsed = [collected(_json_arg, v, f"--{name}") for v in values]
            source["whitelist" if name == "allow" else "blacklist"] = [f for f in parsed if f is not None]
    tls = _client_tls_layer(args)
    if tls:
        source["tls"] = tls
    for key, value in (("source", source), ("otlp", otlp), ("export", export)):
        if value:
            layer[key] = value
    if args.metrics_listen:
        layer["metrics_listen"] = args.metrics_listen
    if args.health_listen:
        layer["health_listen"] = args.health_listen
    if args.cluster_name:
        layer["cluster_name"] = args.cluster_name
    if args.metric:
        layer["metrics"] = {"families": args.metric}
    if args.l3l4_spans:
        layer["spans"] = {"l3l4_spans": True}
    if args.log_all_flows:
        layer["logs"] = {"all_flows": True}
    return layer


def _key_value(text: str, flag: str) -> tuple[str, str]:
    """K=V as given: the value is kept whole (commas included), unlike the environment's k=v,k=v form."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BridgeError(f"{flag}: expected KEY=VALUE")  # the text is not shown: it may be a credential
    return key.strip(), value


def _json_arg(text: str, flag: str) -> Any:
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BridgeError(f"{flag}: not a JSON FlowFilter ({exc})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Cilium Hubble network flows to OpenTelemetry spans, metrics and logs over OTLP.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("bridge", help="read flows from Hubble Relay or files and export them over OTLP")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--relay",
        action="append",
        metavar="ADDR",
        help="Hubble Relay or server: host:port or unix:///path (repeat to read several, see --workers)",
    )
    src.add_argument(
        "--peers", metavar="ADDR", help="read every node's Hubble server found through this peer.Peer service"
    )
    src.add_argument(
        "--file", action="append", metavar="PATH", help="exporter file or `hubble observe -o json`"
    )
    p.add_argument(
        "--follow", action="store_true", default=None, help="with --file: keep reading as it grows"
    )
    p.add_argument("--workers", type=int, metavar="N", help="processes sharing the streams (default 1)")
    p.add_argument(
        "--since",
        metavar="TIME",
        help="with --relay: start from flows since an RFC 3339 time or a duration ago (5m); "
        "default: new flows only",
    )
    p.add_argument(
        "--number", type=int, metavar="N", help="with --relay: start with the last N buffered flows"
    )
    p.add_argument(
        "--first", type=int, metavar="N", help="with --relay: the oldest N buffered flows, then exit"
    )
    p.add_argument(
        "--reader-process",
        choices=("auto", "on", "off"),
        help="with --relay, or --file without --follow: read the stream (parse the files) in a child "
        "process, mapping on another core (default auto: on with 2+ CPUs)",
    )
    p.add_argument(
        "--allow", action="append", metavar="JSON", help="FlowFilter (protojson) to include; OR-ed"
    )
    p.add_argument("--deny", action="append", metavar="JSON", help="FlowFilter (protojson) to exclude")
    _add_client_tls(p)
    _add_export_flags(p)

    p = sub.add_parser("convert", help="turn flow files into OTLP JSON lines (Collector file format)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--output", "-o", required=True, metavar="OUT.jsonl")
    p.add_argument(
        "--allow", action="append", metavar="JSON", help="FlowFilter (protojson) to include; OR-ed"
    )
    p.add_argument("--deny", action="append", metavar="JSON", help="FlowFilter (protojson) to exclude")
    p.add_argument("--cluster-name", help="k8s.cluster.name for flows that do not carry one")
    p.add_argument("--config", metavar="FILE", help="YAML configuration")

    p = sub.add_parser("demo", help="generator + replay relay + bridge on this machine; no cluster needed")
    p.add_argument(
        "--duration", type=float, default=0, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    p.add_argument("--rate", type=float, default=2000, metavar="FLOWS_PER_S")
    p.add_argument("--dir", default="out/demo", metavar="DIR", help="where the OTLP JSON file goes")
    p.add_argument("--metrics-listen", default="127.0.0.1:9965", metavar="ADDR")
    p.add_argument("--seed", type=int, default=1)

    p = sub.add_parser("replay", help="serve recorded flows over Hubble's Observer API, like Hubble Relay")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--listen", default="127.0.0.1:4245", metavar="ADDR", help="host:port or unix:///path")
    p.add_argument("--rate", type=float, metavar="FLOWS_PER_S", help="pace delivery (recorded times kept)")
    p.add_argument("--loop", action="store_true", help="replay again with times re-based, forever")
    p.add_argument("--max-flows", type=int, default=65535, help="ring buffer size, like Hubble's")
    _add_server_tls(p)

    p = sub.add_parser("generate", help="write realistic, deterministic Hubble flows as JSON lines")
    p.add_argument("--count", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--output", "-o", metavar="FILE", help="default: standard output")

    p = sub.add_parser(
        "bench", help="measure throughput: decode, transport, pipeline, end to end, naive design"
    )
    p.add_argument("--json", action="store_true", help="also print one JSON line last")
    p.add_argument("--flows", type=int, default=100_000, metavar="N", help="generated events to measure on")
    p.add_argument(
        "--workers", type=int, default=1, metavar="W", help="2 also measures scale-out (2 streams)"
    )

    p = sub.add_parser(
        "sidecar", help="host-level flows with eBPF (BCC), served through Hubble's Observer API"
    )
    p.add_argument("--interface", action="append", metavar="IFACE", help="attach XDP here (repeatable)")
    p.add_argument("--listen", default="127.0.0.1:4250", metavar="ADDR", help="host:port or unix:///path")
    p.add_argument(
        "--interval", type=float, default=10.0, metavar="S", help="drain the kernel counters every S s"
    )
    p.add_argument("--map-size", type=int, default=65536, metavar="N", help="entries in each kernel map")
    p.add_argument(
        "--node-name", metavar="NAME", help="node name in flows (default $NODE_NAME, else host name)"
    )
    p.add_argument("--metrics-listen", metavar="ADDR", help="serve the sidecar's own metrics (BPF cost) here")
    p.add_argument(
        "--health-listen", metavar="ADDR", help="serve /healthz and /readyz here, for the kubelet's probes"
    )
    p.add_argument(
        "--dns-port",
        type=int,
        action="append",
        metavar="PORT",
        help="DNS on this port too (default 53; repeatable)",
    )
    p.add_argument("--no-l7", action="store_true", help="no DNS/HTTP flows from packets or TLS uprobes")
    p.add_argument(
        "--l7-payload-bytes", type=int, default=1024, metavar="N", help="payload read of each DNS/HTTP packet"
    )
    p.add_argument("--probe-check", action="store_true", help="attach each probe once, say how it went, exit")
    _add_server_tls(p)

    p = sub.add_parser("check", help="print a Hubble server's status; fail with one line if unreachable")
    p.add_argument("--relay", required=True, metavar="ADDR", help="host:port or unix:///path")
    _add_client_tls(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args)
    except BridgeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "generate":
        from hubble_bridge.generator import run_generate

        return run_generate(args.count, args.seed, Path(args.output) if args.output else None)
    if args.command == "replay":
        from hubble_bridge.server.replay import run_replay

        return run_replay(
            args.files,
            args.listen,
            rate=args.rate,
            loop=args.loop,
            tls=_server_tls(args),
            max_flows=args.max_flows,
            on_problem=_report_problem,
        )
    if args.command == "check":
        from hubble_bridge.check import run_check
        from hubble_bridge.tls import ClientTlsOptions

        return run_check(args.relay, ClientTlsOptions(**_client_tls_layer(args)))
    if args.command == "bridge":
        from hubble_bridge.app import run_bridge
        from hubble_bridge.config import load_config

        flag_problems: list[str] = []
        config = load_config(_flag_layer(args, flag_problems), args.config, problems=flag_problems)
        if args.print_config:
            print(config.masked_yaml(), end="")
            return 0
        if not (config.source.relay or config.source.files or config.scaled_out):
            raise BridgeError("bridge needs a source: --relay ADDR, --peers ADDR or --file PATH")
        if config.scaled_out:
            from dataclasses import replace

            from hubble_bridge.scaleout import run_scaleout

            relays = config.scaleout.relays or ([config.source.relay] if not config.scaleout.peers else [])
            return run_scaleout(config, replace(config.scaleout, relays=relays), config.workers)
        return run_bridge(config)
    if args.command == "convert":
        from hubble_bridge.app import run_convert

        return run_convert(args)
    if args.command == "sidecar":
        from hubble_bridge.sidecar import run_probe_check, run_sidecar

        if args.probe_check:
            return run_probe_check(args.interface)
        if not args.interface:
            raise BridgeError("sidecar needs at least one --interface")
        return run_sidecar(
            args.interface, args.listen, args.interval, tls=_server_tls(args), map_size=args.map_size,
            node_name=args.node_name, metrics_listen=args.metrics_listen, health_listen=args.health_listen,
            l7=not args.no_l7, dns_ports=args.dns_port, l7_payload_bytes=args.l7_payload_bytes,
        )  # fmt: skip
    if args.command == "bench":
        from hubble_bridge.bench import run_bench

        return run_bench(args.flows, args.json, args.workers)
    if args.command == "demo":
        from hubble_bridge.demo import run_demo

        return run_demo(args)
    raise AssertionError(args.command)


def _report_problem(problem: object) -> None:
    print(f"{PROG}: skipped {problem}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
