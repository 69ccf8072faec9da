"""Local stand-ins for ESPs' email APIs, for sending through Anymail's real backends: Postmark (one message
or a batch per call) and Mailgun (one message per call)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
import time
import uuid
from urllib.parse import unquote

from werkzeug.datastructures import MultiDict
from werkzeug.http import parse_options_header
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


class MailgunStub:
    """Mailgun's send API as Anymail's Mailgun backend calls it: `POST /v3/<domain>/messages` with form
    fields and HTTP basic auth `api:<key>`, one message per call, answered 200 with the message's id."""

    def __init__(self, latency: float = 0.0, domain: str = "mg.example.org", api_key: str = "test") -> None:
        # Each message taken: its form fields (a field given more than once: the first) and the id it was given.
        self.messages: list[dict] = []
        self.calls = 0  # requests answered, whatever the answer
        self.at_once = 0
        self.most_at_once = 0  # the most requests it was answering at the same time
        self.failures_left = 0
        self.failure_status = 500
        # Addresses Mailgun refuses as not valid: that message alone is answered 400.
        self.invalid: set[str] = set()
        self.domain = domain
        self.api_key = api_key
        self.latency = latency
        self.lock = threading.Lock()
        self.handler = self

    def __call__(self, request: Request) -> Response:
        form = _form(request)
        with self.lock:
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            # The round trip to a real ESP, outside the lock, as requests overlap.
            time.sleep(self.latency)
            with self.lock:
                self.calls += 1
                return self._answer(request, form)
        finally:
            with self.lock:
                self.at_once -= 1

    def _answer(self, request: Request, form: MultiDict) -> Response:
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != ("api", self.api_key):
            return Response("Forbidden", status=401)
        if request.method != "POST" or request.path != f"/v3/{self.domain}/messages":
            return _json({"message": f"Domain not found: {request.path}"}, 404)
        if self.failures_left > 0:
            self.failures_left -= 1
            return _json({"message": "Try again later"}, self.failure_status)
        if invalid := [to for to in form.getlist("to") if to in self.invalid]:
            return _json({"message": f"'to' parameter is not a valid address: {invalid[0]}. please check "
                          "documentation"}, 400)
        message_id = f"<{uuid.uuid4()}@{self.domain}>"
        self.messages.append(dict(form.items()) | {"id": message_id})
        return _json({"id": message_id, "message": "Queued. Thank you."})

    def to(self) -> list[str]:
        return [m["to"] for m in self.messages]


def _form(request: Request) -> MultiDict:
    """The form fields of a request, URL-encoded or multipart. A multipart body is split at its boundary
    here: werkzeug's own parser compiles a regular expression for each request's boundary, which made the
    stand-in for a remote ESP cost the bench's machine more than the sender it measures."""
    kind, options = parse_options_header(request.content_type)
    if kind != "multipart/form-data" or "boundary" not in options or "form" in vars(request):
        return request.form  # (read already by a test's own handler, say)
    fields = MultiDict()
    for part in request.get_data().split(b"--" + options["boundary"].encode())[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if name := re.search(rb'name="([^"]*)"', head):
            fields.add(name.group(1).decode(), value.removesuffix(b"\r\n").decode())
    return fields


def _json(body, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class StubServer:
    """The stub on a loopback port, with keep-alive as a real ESP has (HTTP/1.1: a connection serves
    request after request until the client closes it), a thread per connection, so requests on different
    connections are answered at the same time. `stop()` is an outage: the port refuses connections and the
    open ones are cut; `start()` brings it back on the same port. `accepted` lists the TCP connections it
    took.

    Not werkzeug's development server: that one closes every connection after one request."""

    def __init__(self, stub, port: int = 0) -> None:
        self.stub = stub
        self.port = port
        self.server = None
        self.connections: set[socket.socket] = set()
        self.accepted: list[tuple] = []  # the client's address of every TCP connection accepted

    def start(self) -> StubServer:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        connections, accepted, stub = self.connections, self.accepted, self.stub

        class KeepAlive(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The headers and the body go out in two writes: without this, the second waits for the
            # client's delayed acknowledgement of the first (40 ms) on a kept-alive connection.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                connections.add(self.connection)
                accepted.append(self.client_address)

            def answer(self) -> None:
                # The whole body is read before answering, and the answer says its length: the next
                # request on the connection starts where this one ended.
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                response = stub.handler(Request(_environ(self, body)))
                data = response.get_data()
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = answer

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # many senders' connections arriving at once are not refused

        self.server = Server(("127.0.0.1", self.port), KeepAlive)
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


def _environ(handler, body: bytes) -> dict:
    """The WSGI environment of one request read by `http.server`, for the stubs' werkzeug requests."""
    path, _, query = handler.path.partition("?")
    environ = {
        "REQUEST_METHOD": handler.command, "SCRIPT_NAME": "", "PATH_INFO": unquote(path), "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(handler.server.server_port),
        "SERVER_PROTOCOL": handler.request_version, "REMOTE_ADDR": handler.client_address[0],
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in handler.headers.items():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[f"HTTP_{key}"] = value
    return environ


def emails_to(esp: PostmarkStub, address: str) -> list[dict]:
    """The messages the stub took for `address`, in order."""
    return [m for m in esp.messages if m["To"] == address]


def link(message: dict, path: str) -> str:
    """The first address in a message's text whose path starts with `path`."""
    found = re.search(rf"(http://[^\s/]+{path}\S+)", message["TextBody"])
    assert found, message["TextBody"]
    return found.group(1)
