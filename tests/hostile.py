"""A vendor that misbehaves on purpose, over real HTTP: each route answers what the test says, and every request it
receives is recorded (path, headers), so a test can prove a request never reached it.

A route's answer is ``(status, headers, body)`` where ``body`` is bytes or an iterable of byte chunks: a 200 MB
answer is streamed chunk by chunk, never held, and the server counts what it managed to send before the client hung
up.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Answer = tuple[int, dict[str, str], bytes | Iterable[bytes]]
Route = Callable[["Seen"], Answer]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HostileVendor:
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    #: Bytes written per path before the client stopped reading (or all of them).
    sent: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def json(self, path: str, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()  # the standard library: integers of any size (a 70-digit price)
        self.routes[path] = lambda _seen: (status, {"Content-Type": "application/json", **(headers or {})}, data)

    def __enter__(self) -> HostileVendor:
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                seen = Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                vendor.seen.append(seen)
                route = vendor.routes.get(path)
                status, headers, body = route(seen) if route else (404, {}, b'{"message": "no such route"}')
                chunks = [body] if isinstance(body, bytes) else body
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                written = 0
                try:
                    for chunk in chunks:
                        if isinstance(body, bytes):
                            self.wfile.write(chunk)
                        else:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        written += len(chunk)
                    if not isinstance(body, bytes):
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                vendor.sent[path] = vendor.sent.get(path, 0) + written

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="hostile-vendor", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
