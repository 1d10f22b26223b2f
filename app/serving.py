"""Running ASGI apps with uvicorn: several in one loop until a signal (the CLI), or one in a background thread
(tests and benchmarks, which need a real socket without a second process).

uvicorn's own signal handling re-raises SIGTERM after a clean shutdown (the process then exits 143, not 0)
and only works on the main thread, so these servers leave signals to their owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import uvicorn


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_config(app: Any, host: str, port: int, *, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
        # Who the client is behind a proxy is CATALOG_TRUSTED_PROXIES' call (app.api.ratelimit), not uvicorn's
        # (which would take X-Forwarded-For from any loopback peer).
        proxy_headers=False,
    )


def serve_until_signal(configs: list[uvicorn.Config], on_stop: Callable[[], None] | None = None) -> None:
    """Serve every config from one loop; SIGINT/SIGTERM shut them all down gracefully, a second one forcibly."""
    servers = [QuietServer(config) for config in configs]

    def stop() -> None:
        if on_stop is not None:
            on_stop()
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    async def serve_all() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(server.serve() for server in servers))

    loop_factory = configs[0].get_loop_factory() if configs else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve_all())


class ThreadedServer:
    """One app on ``host`` and a free (or given) port, served from a background thread while it runs."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "server") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        if self._server is not None:
            raise RuntimeError(f"{self.name} already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        server = QuietServer(server_config(self.app, self.host, self.port))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"{self.name}-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=5)
                self._server = self._thread = None
                sock.close()
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=15)
        self._server = self._thread = None
        if thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop")

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
