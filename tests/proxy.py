"""A small HTTP proxy for tests, run as its own process: `python -m tests.proxy LOGFILE`.

CONNECT host:port opens a tunnel (what https and gRPC clients use); a request with an
absolute URL (`POST http://host:port/path`) is forwarded to that host and the answer relayed
back. Every request line is appended to LOGFILE, with a `proxy-auth` mark when it carried
Proxy-Authorization, so a test can tell which traffic went through the proxy. It prints
`listening on PORT` once ready.
"""

from __future__ import annotations

import http.client
import select
import socket
import socketserver
import sys
import threading
from urllib.parse import urlsplit


class _Handler(socketserver.StreamRequestHandler):
    log_path = ""
    lock = threading.Lock()

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65537).decode("latin-1").rstrip("\r\n")
            if not line:
                return
            headers: list[tuple[str, str]] = []
            while (header := self.rfile.readline(65537).decode("latin-1").rstrip("\r\n")) != "":
                name, _, value = header.partition(":")
                headers.append((name.strip(), value.strip()))
            auth = any(n.lower() == "proxy-authorization" for n, _ in headers)
            with self.lock, open(self.log_path, "a") as log:
                log.write(line + (" proxy-auth" if auth else "") + "\n")
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                return self._tunnel(target)
            self._forward(method, target, headers)

    def _tunnel(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host.strip("[]"), int(port)))
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        client = self.connection
        with upstream:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 60)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]]) -> None:
        url = urlsplit(target)
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        body = self.rfile.read(length)
        upstream = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=30)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        skip = {"proxy-authorization", "proxy-connection", "content-length"}
        upstream.request(method, path, body=body, headers={n: v for n, v in headers if n.lower() not in skip})
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        out = [f"HTTP/1.1 {response.status} {response.reason}"]
        out += [
            f"{n}: {v}" for n, v in response.getheaders() if n.lower() not in ("content-length", "connection")
        ]
        out += [f"Content-Length: {len(data)}", "", ""]
        self.wfile.write("\r\n".join(out).encode("latin-1") + data)
        self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    _Handler.log_path = sys.argv[1]
    with _Server(("127.0.0.1", 0), _Handler) as server:
        print(f"listening on {server.server_address[1]}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
