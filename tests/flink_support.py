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
from tests.support import ROOT

JARS_DIR = ROOT / "var" / "flink-jars"


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
