"""A small HTTP/1.1 keep-alive load generator.

Python HTTP clients cost more per request than the server under test, which would make the client the thing
measured. This one sends a fixed pre-encoded request over raw asyncio streams and parses only the status line
and Content-Length, so on a 2-core machine the server stays the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _connection(
    host: str, port: int, requests: list[bytes], deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    turn = 0
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(requests[turn % len(requests)])
            turn += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def hammer(
    host: str,
    port: int,
    path: str | list[str],
    *,
    connections: int = 8,
    seconds: float = 3.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """GET ``path`` (or a list of paths, each connection cycling through its share) for ``seconds``."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    paths = [path] if isinstance(path, str) else path
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for p in paths]
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(
            _connection(host, port, requests[i::connections] or requests, deadline, latencies, errors)
            for i in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0.0

    return LoadResult(len(latencies), len(errors), elapsed, pct(0.5), pct(0.99))
