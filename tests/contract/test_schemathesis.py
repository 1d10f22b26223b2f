"""Schemathesis, every check on, over the whole OpenAPI document, against the real service.

The service runs as a subprocess (``uvicorn app.main:app``, as in ``tests/e2e``) with a DummyJSON simulator as its
vendor, so reads find products, misses reach a vendor, and the generated vendor writes probe a real HTTP server on
this machine (``st_hooks.py``). What the run may answer besides the schema's own promises is in
``schemathesis.toml``, each with its reason. Budget: ``CATALOG_CONTRACT_MAX_EXAMPLES`` examples per operation in
the fuzzing phase (default 25), plus the examples, coverage and stateful phases; about a minute here.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulators.server import SimulatorServer
from tests.support import ADMIN_KEY, ServiceProcess, Sim, admin, service_env, sim_config, wait_synced

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

HERE = Path(__file__).parent
ST = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "st"


@pytest.fixture(scope="module")
def vendor() -> Iterator[Sim]:
    with SimulatorServer(sim_config("dummyjson", size=60)) as server:
        yield Sim(server)


@pytest.fixture(scope="module")
def service(vendor: Sim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("contract")
    env = service_env(
        tmp / "catalog.db",
        CATALOG_WAIT_MS_DEFAULT="200",
        CATALOG_WAIT_MS_MAX="500",
        CATALOG_VENDOR_TIMEOUT_S="1",
        CATALOG_VENDOR_MAX_ATTEMPTS="1",
        CATALOG_SCHEDULER_ENABLED="false",
        # An open change stream ends after a second here, so the fuzzer reads it whole.
        CATALOG_CHANGES_STREAM_MAX_S="1",
        CATALOG_CHANGES_POLL_S="0.1",
    )
    process = ServiceProcess(env, tmp / "service.log")
    try:
        process.start()
        with httpx.Client(base_url=process.base_url, timeout=10) as client:
            created = client.post("/vendors", json=vendor.vendor_body("dj"), headers=admin())
            assert created.status_code == 201, created.text
            wait_synced(client, "dj")
        yield process
        process.terminate()
    finally:
        process.kill()


def test_schemathesis_finds_no_failure(service: ServiceProcess, vendor: Sim, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract.st_hooks",
        "CATALOG_CONTRACT_VENDOR_URL": vendor.base_url,
        "PYTHONPATH": str(HERE.parents[1]),
    }
    run = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{service.base_url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"X-API-Key: {ADMIN_KEY}",
            "--max-examples",
            os.environ.get("CATALOG_CONTRACT_MAX_EXAMPLES", "25"),
            "--seed",
            os.environ.get("CATALOG_CONTRACT_SEED", "14"),
            "--request-timeout",
            "10",
            # One worker: with two threads, hypothesis parsing its lambdas' source at once tripped CPython 3.11's
            # ast.parse ("SystemError: AST constructor recursion depth mismatch", CI 2026-12-03); same run time.
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
        env=env,
    )
    output = run.stdout + run.stderr
    if os.environ.get("CATALOG_CONTRACT_OUTPUT"):
        Path(os.environ["CATALOG_CONTRACT_OUTPUT"]).write_text(output)
    assert run.returncode == 0, output[-12000:] + "\n--- service log ---\n" + service.log()[-4000:]
    # Every operation of the document was tested (none skipped for want of a way to call it), and no case failed.
    document = httpx.get(f"{service.base_url}/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None and int(tested.group(1)) == operations, output[-3000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases is not None and int(cases.group(1)) == int(cases.group(2)) > 0, output[-3000:]
