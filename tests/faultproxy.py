"""A fault-injecting HTTP proxy on 127.0.0.1: a real socket between the client and a service.

Each rule matches a method and a path regex `times` times and then: answers `status` itself (503, 429
with Retry-After), stalls `delay` seconds before forwarding, forwards and cuts the answer off after
its headers and part of the body (`cut`, with a TCP reset), forwards and drops the answer (`lose`), or
forwards and replaces the body with something that is not JSON (`garble`).
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Rule:
    method: str
    path_regex: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    cut: bool = False
    lose: bool = False
    garble: bool = False
    times: int = 1


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


def _close_header(head: bytes) -> bytes:
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"])


class FaultProxy:
    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").rstrip("/").split(":")
        self.upstream = (host, int(port))
        self.rules: list[Rule] = []
        self.hits: list[tuple[str, str, str]] = []  # (method, path, what the proxy did)
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = False

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            method, path = request.split(b" ", 2)[:2]
            method_s, path_s = method.decode(), path.decode().split("?")[0]
            with self._lock:
                rule = next((r for r in self.rules if r.times > 0 and r.method == method_s
                             and re.search(r.path_regex, path_s)), None)
                if rule:
                    rule.times -= 1
            what = "forwarded"
            if rule and rule.delay:
                time.sleep(rule.delay)
                what = "delayed"
            if rule and rule.status:
                extra = "".join(f"{k}: {v}\r\n" for k, v in rule.headers.items())
                body = b'{"error": {"code": %d, "message": "injected"}}' % rule.status
                head = (f"HTTP/1.1 {rule.status} Injected\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
                conn.sendall(head.encode() + body)
                self._record(method_s, path_s, f"status {rule.status}")
                return
            head, _, body = request.partition(b"\r\n\r\n")
            with socket.create_connection(self.upstream, timeout=30) as up:
                up.sendall(_close_header(head) + b"\r\n\r\n" + body)
                answer = b""
                while chunk := up.recv(65536):
                    answer += chunk
            rhead, _, rbody = answer.partition(b"\r\n\r\n")
            if rule and rule.lose:
                self._record(method_s, path_s, "lost")
                return
            if rule and rule.garble:
                rbody = b"<html>502 Bad Gateway</html>"
                rhead = re.sub(rb"(?im)^content-length:\s*\d+", b"Content-Length: %d" % len(rbody), rhead)
                what = "garbled"
            out = _close_header(rhead) + b"\r\n\r\n" + rbody
            if rule and rule.cut:
                conn.sendall(out[: len(out) - max(1, len(rbody) // 2)])
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                self._record(method_s, path_s, "cut")
                return
            conn.sendall(out)
            self._record(method_s, path_s, what)

    def _record(self, method: str, path: str, what: str) -> None:
        with self._lock:
            self.hits.append((method, path, what))
