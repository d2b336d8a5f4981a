"""A real HTTP receiver for webhook tests: http.server on a free port, in a thread.

It keeps every POST it gets (path and JSON body) and answers 200, or the statuses a test queues.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class Receiver:
    port: int
    got: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses to answer first, then 200
    location: str | None = None  # sent with a 3xx answer
    lock: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str | None = None) -> list[Any]:
        with self.lock:
            return [r.body for r in self.got if path is None or r.path == path]

    def wait_for(self, count: int, deadline_s: float = 60.0) -> list[Received]:
        """At least ``count`` posts, or fail after the deadline."""
        end = time.monotonic() + deadline_s
        with self.lock:
            while len(self.got) < count:
                left = end - time.monotonic()
                assert left > 0, f"the receiver got {len(self.got)} posts, expected {count}: {self.got}"
                self.lock.wait(left)
            return list(self.got)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def receiving(port: int | None = None) -> Iterator[Receiver]:
    receiver = Receiver(port or free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            with receiver.lock:
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.got.append(Received(self.path, json.loads(raw), dict(self.headers)))
                receiver.lock.notify_all()
            self.send_response(status)
            if 300 <= status < 400 and receiver.location:
                self.send_header("location", receiver.location)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default 5 drops connects when a dispatcher posts 8 at once

    server = Server(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def trickling(byte_every_s: float = 0.2) -> Iterator[str]:
    """A receiver that reads the request, then answers a byte at a time, a header that never
    ends, until the block ends: each read is prompt, the answer never whole. Its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    clients: list[socket.socket] = []

    def answer(client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            client.recv(65536)
            client.sendall(b"HTTP/1.1 200 OK\r\nx-slow: ")
            while not stop.wait(byte_every_s):
                client.sendall(b"a")

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while not stop.is_set():
                client, _ = listener.accept()
                clients.append(client)
                threading.Thread(target=answer, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow"
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        listener.close()
        for client in clients:
            client.close()


@contextmanager
def holding_open() -> Iterator[str]:
    """A receiver that reads the request, answers 200 with a body it promises and never sends,
    and keeps the connection open until the block ends. Its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    clients: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                client, _ = listener.accept()
                clients.append(client)
                client.recv(65536)
                client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/open"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for client in clients:
            client.close()
