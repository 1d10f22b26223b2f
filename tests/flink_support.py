"""The Flink ingest job as a subprocess (a local MiniCluster), for tests and the benchmark.

The job runs in its own process group: PyFlink's driver starts a JVM (the MiniCluster) and that JVM starts the
Python workers, so stopping the job means stopping the whole group, not just the driver.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from app.settings import Settings
from tests.kafka_support import unique
from tests.support import ROOT

JARS_DIR = ROOT / "var" / "flink-jars"
TOPIC_SETTINGS = ("vendor_requests", "product_requests", "updates", "vendors", "dead_letters")


def private_topics() -> dict[str, str]:
    """``kafka_topic_*`` settings with names private to one test module (the broker is shared)."""
    return {f"kafka_topic_{name}": unique(name) for name in TOPIC_SETTINGS}


def job_env(bootstrap: str, topics: Mapping[str, str], **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env.update({f"CATALOG_{k.upper()}": v for k, v in topics.items()})
    env.update(
        {
            "CATALOG_KAFKA_BOOTSTRAP": bootstrap,
            "CATALOG_OUTBOUND_ALLOW_PRIVATE": "127.0.0.0/8",
            "CATALOG_ENV": "development",
            "CATALOG_KAFKA_PARTITIONS": "2",
            "CATALOG_FLINK_JARS_DIR": str(JARS_DIR),
            "CATALOG_VENDOR_TIMEOUT_S": "5",
            "CATALOG_VENDOR_MAX_ATTEMPTS": "2",
            "CATALOG_VENDOR_BACKOFF_BASE_S": "0.01",
            "CATALOG_VENDOR_BACKOFF_MAX_S": "0.05",
            "CATALOG_PAGE_ATTEMPTS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def ensure_jars() -> None:
    """The project's own install step (what `make install` runs); fast when the jars are there."""
    from app.distributed.flink.jars import install

    install(JARS_DIR)


class FlinkJob:
    """``python -m app.distributed.flink.job`` with the given environment; its output goes to ``log_path``."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *args: str) -> None:
        self.env = dict(env)
        self.args = list(args)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def settings(self) -> Settings:
        values: dict[str, Any] = {
            k[len("CATALOG_") :].lower(): v for k, v in self.env.items() if k.startswith("CATALOG_")
        }
        return Settings(**values)

    def start(self) -> FlinkJob:
        self._log = self.log_path.open("ab")
        # The MiniCluster's own log, one folder per start (it is rewritten when a job starts).
        flink_logs = self.log_path.parent / f"{self.log_path.stem}-flink-{self.starts + 1}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.distributed.flink.job", *self.args],
            cwd=ROOT,
            env={**self.env, "FLINK_LOG_DIR": str(flink_logs)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the Flink job exited with {self.proc.returncode}:\n{self.log()[-5000:]}")

    def stop(self, *, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            with _suppress_lookup():
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with _suppress_lookup():
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            # The JVM and the Python workers are in the same group; give them a moment to go.
            deadline = time.monotonic() + timeout
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_alive(proc.pid):
                with _suppress_lookup():
                    os.killpg(proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, ProcessLookupError)


# -- a Tansu that Debian's kcat can talk to -------------------------------------------------------------------

API_VERSIONS = 18


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def strip_api_versions_tags(body: bytes) -> bytes:
    """An ApiVersions v3 response body (after the length) without its top-level tagged fields.

    Tansu 0.6.0 sends SupportedFeatures, FinalizedFeaturesEpoch, FinalizedFeatures and ZkMigrationReady there;
    the librdkafka 2.0.2 inside Debian's kcat 1.7.1 misreads them and drops the connection. They are optional
    (KIP-584 features), so an answer without them is still a valid answer.
    """
    pos = 4 + 2  # correlation id, error code (response header v0 for ApiVersions)
    count, pos = _uvarint(body, pos)
    for _ in range(max(count - 1, 0)):
        pos += 6  # api key, min version, max version
        tags, pos = _uvarint(body, pos)
        for _ in range(tags):
            _, pos = _uvarint(body, pos)
            size, pos = _uvarint(body, pos)
            pos += size
    pos += 4  # throttle time
    return body[:pos] + b"\x00"


class KcatFriendlyBroker:
    """Tansu behind a small TCP proxy that only rewrites ApiVersions v3 answers (see ``strip_api_versions_tags``).

    Tansu advertises the proxy's port, so every client (kcat, the Flink job's Java clients, the nodes' librdkafka)
    goes through the proxy after bootstrap; everything but that one answer passes through byte for byte.
    """

    def __init__(self) -> None:
        from tests.support import free_port

        self.port = free_port()
        self.tansu_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: Any = None
        self._thread: Any = None
        self._server: Any = None
        self._writers: set[Any] = set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KcatFriendlyBroker:
        import asyncio
        import threading

        from app.distributed.kafka.broker import port_open, tansu_binary

        listen, advertised = f"tcp://127.0.0.1:{self.tansu_port}", f"tcp://127.0.0.1:{self.port}"
        command = [str(tansu_binary()), "broker", "--storage-engine", "memory://tansu/", "--listener-url", listen]
        self._proc = subprocess.Popen(
            [*command, "--advertised-listener-url", advertised],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.tansu_port):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError("tansu did not start")
            time.sleep(0.02)
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop)
        if not started.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    async def _client(self, reader: Any, writer: Any) -> None:
        import asyncio
        import struct

        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.tansu_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        versions_calls: set[int] = set()

        async def frames(src: Any, dst: Any, rewrite: bool) -> None:
            try:
                while True:
                    head = await src.readexactly(4)
                    body = await src.readexactly(struct.unpack(">i", head)[0])
                    if not rewrite:
                        api_key, api_version, correlation = struct.unpack(">hhi", body[:8])
                        if api_key == API_VERSIONS and api_version >= 3:
                            versions_calls.add(correlation)
                    elif struct.unpack(">i", body[:4])[0] in versions_calls:
                        versions_calls.discard(struct.unpack(">i", body[:4])[0])
                        body = strip_api_versions_tags(body)
                        head = struct.pack(">i", len(body))
                    dst.write(head + body)
                    await dst.drain()
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(frames(reader, up_writer, False), frames(up_reader, writer, True))

    def stop(self) -> None:
        if self._loop is not None:
            import asyncio

            loop, self._loop = self._loop, None

            async def shutdown() -> None:
                self._server.close()
                for writer in list(self._writers):
                    writer.close()
                await asyncio.sleep(0.05)
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._server.wait_closed()

            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(5)
            loop.close()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
