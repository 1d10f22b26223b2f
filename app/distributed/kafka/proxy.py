"""A TCP proxy in front of the development broker that makes Tansu 0.6.0 readable by every librdkafka.

Tansu 0.6.0 ends its ApiVersions v3 answer with tagged fields (SupportedFeatures, FinalizedFeaturesEpoch,
FinalizedFeatures, ZkMigrationReady) that librdkafka 2.0.2, the one inside Debian's kcat 1.7.1, misreads: it drops
the connection, so `kcat -b` never gets further than the first request. Those fields are optional (KIP-584
features), so the proxy removes them from that one answer and passes every other byte through untouched. Tansu
advertises the proxy's address, so clients come back through it after bootstrap. A real Kafka needs none of this.

With S3 storage (the durable ``catalog broker``) Tansu answers a Fetch with no records when reading its objects
takes longer than the request's ``max_wait_ms``, and the client asks again from the same offset. The catalog's
consumers ask for 10 ms (low latency on a real Kafka), so after a restart, when nothing is cached, a partition could
read nothing for tens of seconds (measured: produce-to-consume p95 20.5 s at 10 ms, 0.11-0.21 s with a floor of
100-300 ms). The proxy can therefore raise ``max_wait_ms`` to a floor (``fetch_wait_floor_ms``); the memory broker
keeps the clients' own value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
from concurrent.futures import Future

log = logging.getLogger(__name__)

API_VERSIONS = 18
FETCH = 1


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _skip_tags(data: bytes, pos: int) -> int:
    """Past a tagged-fields section (count, then tag, size and bytes of each) that starts at ``pos``."""
    tags, pos = _uvarint(data, pos)
    for _ in range(tags):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


def strip_api_versions_tags(body: bytes) -> bytes:
    """An ApiVersions v3 response body (after the length prefix) without its top-level tagged fields."""
    pos = 4 + 2  # correlation id, error code (ApiVersions answers with response header v0)
    count, pos = _uvarint(body, pos)  # compact array: n + 1
    for _ in range(max(count - 1, 0)):
        pos = _skip_tags(body, pos + 6)  # after api key, min version, max version
    pos += 4  # throttle time
    return body[:pos] + b"\x00"  # no tagged fields


def _max_wait_at(body: bytes) -> int:
    """Where a Fetch request's ``max_wait_ms`` sits in ``body`` (after the length prefix)."""
    api_version = struct.unpack(">h", body[2:4])[0]
    pos = 8  # api key, api version, correlation id
    client_id = struct.unpack(">h", body[pos : pos + 2])[0]
    pos += 2 + max(client_id, 0)
    if api_version >= 12:  # flexible versions: request header v2 ends with tagged fields
        pos = _skip_tags(body, pos)
    return pos if api_version >= 15 else pos + 4  # up to v14 the body starts with replica_id


def raise_fetch_wait(body: bytes, floor_ms: int) -> bytes:
    """A Fetch request body whose ``max_wait_ms`` is at least ``floor_ms``."""
    at = _max_wait_at(body)
    if struct.unpack(">i", body[at : at + 4])[0] >= floor_ms:
        return body
    return body[:at] + struct.pack(">i", floor_ms) + body[at + 4 :]


class ApiVersionsProxy:
    """Listens on ``host:port`` and forwards to ``upstream``, in a thread with its own event loop."""

    def __init__(
        self, host: str, port: int, upstream_host: str, upstream_port: int, *, fetch_wait_floor_ms: int = 0
    ) -> None:
        self.host = host
        self.fetch_wait_floor_ms = fetch_wait_floor_ms
        self.port = port
        self._upstream = (upstream_host, upstream_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self, *, timeout: float = 10.0) -> ApiVersionsProxy:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="kafka-proxy", daemon=True)
        self._thread.start()
        ready: Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, self.host, self.port, reuse_address=True), loop
        )
        try:
            self._server = ready.result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError as exc:
            log.warning("broker proxy: upstream %s:%s unreachable: %s", *self._upstream, exc)
            writer.close()
            return
        self._writers.update((writer, up_writer))
        asked: set[int] = set()  # correlation ids of ApiVersions v3+ requests on this connection
        # A connection cancelled by stop() ends quietly: asyncio logs a traceback for every client callback task
        # that ends cancelled, one per client still connected when the broker stops.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(reader, up_writer, asked, False), self._pipe(up_reader, writer, asked, True)
            )

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, asked: set[int], answers: bool) -> None:
        try:
            while True:
                head = await src.readexactly(4)
                body = await src.readexactly(struct.unpack(">i", head)[0])
                if not answers:
                    api_key, api_version, correlation = struct.unpack(">hhi", body[:8])
                    if api_key == API_VERSIONS and api_version >= 3:
                        asked.add(correlation)
                    elif api_key == FETCH and self.fetch_wait_floor_ms:
                        body = raise_fetch_wait(body, self.fetch_wait_floor_ms)
                else:
                    correlation = struct.unpack(">i", body[:4])[0]
                    if correlation in asked:
                        asked.discard(correlation)
                        body = strip_api_versions_tags(body)
                        head = struct.pack(">i", len(body))
                dst.write(head + body)
                await dst.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        loop.close()
