"""One scale-out worker process: a Bridge over the streams the parent assigns, metrics sent to the parent.

Spans and logs leave through the worker's own exporter (one per process); metric
snapshots and stream positions go up the result pipe every `interval_s`, and once
more, exact, when the worker stops. Messages (pickled tuples):
  parent -> worker: ("assign", {key: (StreamSpec, start_after_ns | None)}), ("stop",)
  worker -> parent: ("ready", pid), ("state", snapshot, positions), ("released", {key: position}),
                    ("final", snapshot, positions), ("error", one-line message)
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from hubble_bridge.config import BridgeConfig
from hubble_bridge.errors import BridgeError
from hubble_bridge.pipeline import Bridge, Sink
from hubble_bridge.sinks.select import SignalSelect
from hubble_bridge.sources.base import FlowSource
from hubble_bridge.sources.peers import StreamSpec
from hubble_bridge.sources.streams import StreamSet
from hubble_bridge.tls import ClientTlsOptions

log = logging.getLogger("hubble_bridge.scaleout")
# The Bridge's own metric jobs are not needed in a worker: snapshots go to the parent instead.
_NEVER_S = 10.0**9


def rfc3339(time_ns: int) -> str:
    """An RFC 3339 time at or before `time_ns` (microseconds: what `since` parsing keeps)."""
    moment = datetime.fromtimestamp(time_ns // 10**9, UTC).replace(microsecond=(time_ns % 10**9) // 1000)
    return moment.isoformat().replace("+00:00", "Z")


def open_stream(config: BridgeConfig, spec: StreamSpec, after_ns: int | None) -> FlowSource:
    """A resilient GetFlows stream for `spec`, after `after_ns` when handed over (StreamSet drops ties)."""
    from hubble_bridge.sources.resilient import ResilientRelaySource

    source = config.source
    tls: ClientTlsOptions = source.tls
    if spec.tls is True:
        tls = replace(tls, enabled=True, server_name=spec.tls_server_name or tls.server_name)
    elif spec.tls is False:
        tls = ClientTlsOptions()  # the node serves plaintext, whatever is configured for Relay
    resumed = after_ns is not None
    settings = replace(
        source,
        relay=spec.target,
        files=[],
        tls=tls,
        first=0,
        since=rfc3339(after_ns) if after_ns is not None else source.since,
        number=0 if resumed else source.number,
    )
    return ResilientRelaySource(settings)


def worker_output(path: str, index: int) -> str:
    """Each worker writes its spans and logs to its own file: out.jsonl -> out.worker1.jsonl."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}.worker{index}{p.suffix}"))


def worker_config(config: BridgeConfig, index: int) -> BridgeConfig:
    export = replace(
        config.export,
        metric_interval_s=_NEVER_S,
        output_file=worker_output(config.export.output_file, index) if config.export.output_file else "",
    )
    return replace(config, export=export, metrics_listen="", health_listen="")


def worker_main(
    index: int,
    config: BridgeConfig,
    commands: Connection,
    results: Connection,
    interval_s: float,
    log_level: int = logging.WARNING,
) -> None:
    """Entry point of a spawned worker; returns when told to stop or when the parent is gone."""
    logging.basicConfig(level=log_level, format=f"hubble-otlp worker {index}: %(levelname)s %(message)s")
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> bool:
        try:
            with lock:
                results.send(message)
            return True
        except (OSError, ValueError):
            return False

    try:
        from hubble_bridge.app import build_sinks

        wcfg = worker_config(config, index)
        streams = StreamSet(lambda spec, after: open_stream(config, spec, after))
        # spans and logs only: the parent exports the merged metrics
        sinks: list[Sink] = [SignalSelect(s, ("traces", "logs")) for s in build_sinks(wcfg)]
        bridge = Bridge(wcfg, streams, sinks)
    except BridgeError as exc:
        send(("error", str(exc)))
        return
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    send(("ready", os.getpid()))
    done = threading.Event()
    threading.Thread(target=_take_commands, args=(commands, streams, bridge, send), daemon=True).start()
    threading.Thread(target=_report, args=(bridge, streams, send, interval_s, done), daemon=True).start()
    bridge.run()
    done.set()
    # Positions after the snapshot: a stream is never resumed before what the totals counted.
    snapshot = bridge.snapshot()
    send(("final", snapshot, streams.positions()))
    if bridge.error:
        send(("error", bridge.error))
    results.close()


def _take_commands(
    commands: Connection, streams: StreamSet, bridge: Bridge, send: Callable[[tuple[Any, ...]], bool]
) -> None:
    while True:
        try:
            message = commands.recv()
        except (EOFError, OSError):
            break  # the parent is gone: stop rather than outlive it
        if message[0] == "assign":
            released = streams.apply(message[1])
            if released:
                send(("released", released))
        elif message[0] == "stop":
            break
    bridge.stop()


def _report(
    bridge: Bridge,
    streams: StreamSet,
    send: Callable[[tuple[Any, ...]], bool],
    interval_s: float,
    done: threading.Event,
) -> None:
    while not done.wait(interval_s):
        snapshot = bridge.snapshot()
        if not send(("state", snapshot, streams.positions())):
            bridge.stop()
            return


def start_worker(
    ctx: BaseContext,
    index: int,
    config: BridgeConfig,
    interval_s: float,
    log_level: int,
    post: Callable[[tuple[Any, ...]], None],
) -> tuple[BaseProcess, Connection]:
    """Spawn worker `index`; its messages reach `post` as ("msg", index, message), then ("eof", index).

    Returns the process and the connection to send commands on.
    """
    command_out, command_in = ctx.Pipe(duplex=False)
    result_out, result_in = ctx.Pipe(duplex=False)
    process = ctx.Process(  # type: ignore[attr-defined]
        target=worker_main,
        args=(index, config, command_out, result_in, interval_s, log_level),
        name=f"hubble-otlp-worker-{index}",
        daemon=True,  # never outlive the parent
    )
    process.start()
    command_out.close()
    result_in.close()  # the worker holds the only writer now: its end is our EOF

    def read() -> None:
        try:
            while True:
                post(("msg", index, result_out.recv()))
        except (EOFError, OSError):
            post(("eof", index))
        finally:
            result_out.close()

    threading.Thread(target=read, name=f"worker-{index}-results", daemon=True).start()
    return process, command_in
