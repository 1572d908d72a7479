"""A small authoritative DNS server for tests, run as its own process: UDP and TCP on one address and port.

    python tests/dns_server.py ADDRESS PORT

Zone (names end in ".test."):
  www.test.       A 192.0.2.10, 192.0.2.11 (TTL 300 and 60)
  alias.test.     CNAME www.test. (TTL 120), then www.test.'s A records
  v6.test.        AAAA 2001:db8::10 (TTL 30)
  silent.test.    never answered: the client times out
  anything else   NXDOMAIN
Prints the bound port on stdout once both sockets listen; serves until killed. It answers from its own
table, written for these tests (no DNS library): the sidecar's parser reads bytes it did not build.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

A_RECORDS = {"www.test.": [("192.0.2.10", 300), ("192.0.2.11", 60)]}
AAAA_RECORDS = {"v6.test.": [("2001:db8::10", 30)]}
CNAMES = {"alias.test.": ("www.test.", 120)}
SILENT = {"silent.test."}


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_question(data: bytes) -> tuple[str, int, int]:
    offset, labels = 12, []
    while data[offset]:
        length = data[offset]
        labels.append(data[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    qtype = struct.unpack_from("!H", data, offset + 1)[0]
    return ".".join(labels) + ".", qtype, offset + 5


def record(name: str, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return encode_name(name) + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def answer(query: bytes) -> bytes | None:
    ident, flags = struct.unpack_from("!HH", query)
    name, qtype, end = read_question(query)
    if name in SILENT:
        return None
    answers = []
    target = name
    if name in CNAMES:
        target, ttl = CNAMES[name]
        answers.append(record(name, 5, ttl, encode_name(target)))
    if qtype == 1:
        answers += [record(target, 1, ttl, socket.inet_aton(ip)) for ip, ttl in A_RECORDS.get(target, [])]
    if qtype == 28:
        answers += [
            record(target, 28, ttl, socket.inet_pton(socket.AF_INET6, ip))
            for ip, ttl in AAAA_RECORDS.get(target, [])
        ]
    known = target in A_RECORDS or target in AAAA_RECORDS
    rcode = 0 if known else 3
    header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1, len(answers), 0, 0)
    return header + query[12:end] + b"".join(answers)


def serve_udp(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(4096)
        reply = answer(data)
        if reply is not None:
            sock.sendto(reply, peer)


def serve_tcp_client(conn: socket.socket) -> None:
    with conn:
        while header := conn.recv(2):
            length = struct.unpack("!H", header)[0]
            data = b""
            while len(data) < length:
                data += conn.recv(length - len(data))
            reply = answer(data)
            if reply is not None:
                conn.sendall(struct.pack("!H", len(reply)) + reply)


def serve_tcp(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve_tcp_client, args=(conn,), daemon=True).start()


def main() -> None:
    address, port = sys.argv[1], int(sys.argv[2])
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    udp.bind((address, port))
    port = udp.getsockname()[1]
    tcp = socket.socket(family, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, port))
    tcp.listen()
    threading.Thread(target=serve_tcp, args=(tcp,), daemon=True).start()
    print(port, flush=True)
    serve_udp(udp)


if __name__ == "__main__":
    main()
