"""A local stand-in for Postmark's email API, for sending through Anymail's real Postmark backend."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid

from werkzeug.wrappers import Request, Response


class PostmarkStub:
    def __init__(self, latency: float = 0.0, latency_per_message: float = 0.0) -> None:
        self.messages: list[dict] = []
        # Every request that reached the stub, answered or refused.
        self.requests = 0
        self.failures_left = 0
        self.failure_status = 500
        # Addresses Postmark has marked inactive (a past hard bounce or complaint): refused one by one.
        self.inactive: set[str] = set()
        self.latency = latency
        self.latency_per_message = latency_per_message
        self.lock = threading.Lock()
        self.handler = self

    def _accept(self, message: dict) -> dict:
        if message.get("To") in self.inactive:
            return {"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as "
                    f"inactive.\nFound inactive addresses: {message['To']}.\nInactive recipients are ones that "
                    "have generated a hard bounce or a spam complaint. "}
        self.messages.append(message)
        return {"To": message.get("To"), "SubmittedAt": "2026-11-27T10:00:00Z", "MessageID": str(uuid.uuid4()),
                "ErrorCode": 0, "Message": "OK"}

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        batch = request.path.rstrip("/").endswith("/batch")
        # The round trip to a real ESP (outside the lock, as requests overlap), and its work per message.
        time.sleep(self.latency + self.latency_per_message * (len(body) if batch else 1))
        with self.lock:
            self.requests += 1
            if request.headers.get("X-Postmark-Server-Token") is None:
                return Response(json.dumps({"ErrorCode": 10, "Message": "No token"}), status=401)
            if self.failures_left > 0:
                self.failures_left -= 1
                return Response(json.dumps({"ErrorCode": 100, "Message": "Try again"}), status=self.failure_status,
                                content_type="application/json")
            if batch:
                result = [self._accept(message) for message in body]
            else:
                result = self._accept(body)
                if result["ErrorCode"]:
                    return Response(json.dumps(result), status=422, content_type="application/json")
            return Response(json.dumps(result), content_type="application/json")

    def to(self) -> list[str]:
        return [m["To"] for m in self.messages]


class StubServer:
    """The stub on a loopback port, with keep-alive as a real ESP has. `stop()` is an outage: the port
    refuses connections and the open ones are cut; `start()` brings it back on the same port."""

    def __init__(self, stub: PostmarkStub, port: int = 0) -> None:
        self.stub = stub
        self.port = port
        self.server = None
        self.connections: set[socket.socket] = set()

    def start(self) -> StubServer:
        from werkzeug.serving import WSGIRequestHandler, make_server

        connections = self.connections

        class KeepAlive(WSGIRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                connections.add(self.connection)

            def log_request(self, *args, **kwargs) -> None:
                pass

        self.server = make_server("127.0.0.1", self.port, wsgi_app(self.stub), threaded=True,
                                  request_handler=KeepAlive)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.connections.clear()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def wsgi_app(stub: PostmarkStub):
    def app(environ, start_response):
        return stub(Request(environ))(environ, start_response)

    return app


def emails_to(esp: PostmarkStub, address: str) -> list[dict]:
    """The messages the stub took for `address`, in order."""
    return [m for m in esp.messages if m["To"] == address]


def link(message: dict, path: str) -> str:
    """The first address in a message's text whose path starts with `path`."""
    found = re.search(rf"(http://[^\s/]+{path}\S+)", message["TextBody"])
    assert found, message["TextBody"]
    return found.group(1)
