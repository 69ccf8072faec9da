"""A local stand-in for Postmark's email API, for sending through Anymail's real Postmark backend."""

from __future__ import annotations

import json
import threading
import uuid

from werkzeug.wrappers import Request, Response


class PostmarkStub:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.failures_left = 0
        self.failure_status = 500
        self.lock = threading.Lock()
        self.handler = self

    def _accept(self, message: dict) -> dict:
        self.messages.append(message)
        return {"To": message.get("To"), "SubmittedAt": "2026-11-27T10:00:00Z", "MessageID": str(uuid.uuid4()),
                "ErrorCode": 0, "Message": "OK"}

    def __call__(self, request: Request) -> Response:
        with self.lock:
            if request.headers.get("X-Postmark-Server-Token") is None:
                return Response(json.dumps({"ErrorCode": 10, "Message": "No token"}), status=401)
            if self.failures_left > 0:
                self.failures_left -= 1
                return Response(json.dumps({"ErrorCode": 100, "Message": "Try again"}), status=self.failure_status,
                                content_type="application/json")
            body = json.loads(request.get_data())
            if request.path.rstrip("/").endswith("/batch"):
                result = [self._accept(message) for message in body]
            else:
                result = self._accept(body)
            return Response(json.dumps(result), content_type="application/json")

    def to(self) -> list[str]:
        return [m["To"] for m in self.messages]


def serve(stub: PostmarkStub):
    """Serve the stub on a loopback port with keep-alive, as a real ESP would; returns the server."""
    import threading

    from werkzeug.serving import WSGIRequestHandler, make_server

    class KeepAlive(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

    server = make_server("127.0.0.1", 0, wsgi_app(stub), threaded=True, request_handler=KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wsgi_app(stub: PostmarkStub):
    def app(environ, start_response):
        return stub(Request(environ))(environ, start_response)

    return app
