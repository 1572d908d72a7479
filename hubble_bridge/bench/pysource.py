"""The fallback bench source: grpc.aio streaming pre-serialized frames (no per-message protobuf work).

`python -m hubble_bridge.bench.pysource FRAMES` prints its address, then serves
GetFlows (`number` frames, cycling; all once when 0) and an empty ServerStatus.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from hubble_bridge.api import observer_pb2
from hubble_bridge.bench.source import read_frames


async def serve(frames: list[bytes]) -> None:
    async def get_flows(request: bytes, _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        count = observer_pb2.GetFlowsRequest.FromString(request).number or len(frames)
        total = len(frames)
        for i in range(count):
            yield frames[i % total]

    async def server_status(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return b""

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "observer.Observer",
        {
            "GetFlows": grpc.unary_stream_rpc_method_handler(get_flows),
            "ServerStatus": grpc.unary_unary_rpc_method_handler(server_status),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hubble_bridge.bench.pysource FRAMES", file=sys.stderr)
        return 2
    frames = read_frames(Path(argv[0]))
    if not frames:
        print(f"pysource: no frames in {argv[0]}", file=sys.stderr)
        return 2
    asyncio.run(serve(frames))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
