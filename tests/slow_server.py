"""A source at the far end of a bad line: it answers at once, then sends its body one byte at a time."""

from __future__ import annotations

import socket
import threading
import time


class DrippingServer:
    """Answers every request with headers at once, then a body of one byte every `interval` seconds (or
    with headers that never end, a line at a time)."""

    def __init__(self, interval: float = 0.5, headers_too: bool = False) -> None:
        self.interval = interval
        self.headers_too = headers_too
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            if self.headers_too:
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            else:
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                                   b"Content-Length: 100000\r\n\r\n")
            # Then a byte at a time: of a header that never ends, or of the body.
            while not self.stopped.is_set():
                try:
                    connection.sendall(b"a" if self.headers_too else b" ")
                except OSError:
                    return
                time.sleep(self.interval)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed"

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
