"""The OpenAPI document as client generators and linters see it: Redocly's recommended rules, a TypeScript client
(openapi-typescript) that must type-check a small program with ``tsc``, and OpenAPI Generator's ``dart-dio`` client
(what Flutter teams generate) whose method names must be our operation ids.

The npm tools come from ``tests/contract/package-lock.json`` (``make install``); OpenAPI Generator is the jar inside
the pinned ``openapi-generator-cli`` wheel, run on the Java the Flink job needs, so nothing is downloaded here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.main import create_app
from app.settings import Settings

HERE = Path(__file__).parent
BIN = HERE / "node_modules" / ".bin"
VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"

#: The operation ids a client author sees, one per operation (issue 14).
OPERATION_IDS = {
    "listProducts",
    "batchGetProducts",
    "getProduct",
    "listChanges",
    "getImage",
    "streamChanges",
    "listVendors",
    "createVendor",
    "getVendor",
    "updateVendor",
    "deleteVendor",
    "syncVendor",
    "listVendorProducts",
    "getVendorProduct",
    "getRequest",
    "getHealth",
    "getReadiness",
    "getMetrics",
    "receiveShopifyWebhook",
    "receiveWooCommerceWebhook",
    "getProductPriceHistory",
    "listVendorAnalytics",
    "splitOffer",
    "pinOffers",
    "clearOfferOverrides",
}


def npm_tool(name: str) -> Path:
    tool = BIN / name
    if not tool.exists():
        pytest.skip(f"{name} is not installed: run `make install` (npm ci in tests/contract)")
    return tool


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


@pytest.fixture(scope="module")
def spec_file(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(document))
    return path


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in document["paths"].values() for op in item.values()}


def test_every_operation_has_its_short_id_and_says_how_to_authenticate(document: dict[str, Any]) -> None:
    ops = operations(document)
    assert set(ops) == OPERATION_IDS
    admin = {name for name, op in ops.items() if op["security"] == [{"AdminKey": []}]}
    assert admin == {
        "createVendor",
        "updateVendor",
        "deleteVendor",
        "syncVendor",
        "getProductPriceHistory",
        "listVendorAnalytics",
        "splitOffer",
        "pinOffers",
        "clearOfferOverrides",
    }
    assert all(op["security"] == [] for name, op in ops.items() if name not in admin)
    assert document["components"]["securitySchemes"]["AdminKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The admin key (setting `CATALOG_ADMIN_KEY`).",
    }
    assert document["servers"][0]["url"] == "http://127.0.0.1:8000"


def test_parameters_carry_no_unions_and_prices_are_strings(document: dict[str, Any]) -> None:
    for op in operations(document).values():
        for parameter in op.get("parameters", ()):
            assert "anyOf" not in json.dumps(parameter["schema"]), (op["operationId"], parameter)
    params = {p["name"]: p for p in operations(document)["listProducts"]["parameters"]}
    assert params["min_price"]["schema"] == {
        "type": "string",
        "pattern": r"^[0-9]{1,12}(\.[0-9]{1,64})?$",
        "examples": ["19.99"],
    }
    assert "EUR" in params["currency"]["schema"]["enum"]
    assert params["fields"]["style"] == "form" and params["fields"]["explode"] is False


def test_every_error_answer_is_the_one_error_shape(document: dict[str, Any]) -> None:
    for op in operations(document).values():
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (op["operationId"], status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_redocly_recommended_rules_find_no_error(spec_file: Path) -> None:
    redocly = npm_tool("redocly")
    run = subprocess.run(
        [str(redocly), "lint", str(spec_file), "--extends", "recommended", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE,
    )
    report = json.loads(run.stdout)
    problems = [(p["ruleId"], p["severity"], p["message"]) for p in report["problems"]]
    assert [p for p in problems if p[1] == "error"] == [], problems
    assert report["totals"]["errors"] == 0
    assert run.returncode == 0, run.stderr


TS_PROGRAM = """
import type { components, operations } from "./api";

type ProductList = components["schemas"]["ProductList"];
type ListQuery = NonNullable<operations["listProducts"]["parameters"]["query"]>;
type BatchQuery = operations["batchGetProducts"]["parameters"]["query"];
type Changes = components["schemas"]["ChangePage"];
type ImageQuery = NonNullable<operations["getImage"]["parameters"]["query"]>;

const query: ListQuery = {
  q: "phone", min_price: "19.99", currency: "EUR", fields: ["id", "name", "min_price"], limit: 20, sort: "-price",
};
const batch: BatchQuery = { ids: ["p_1", "p_2"], fields: ["id", "offers"] };
const thumb: ImageQuery = { w: 200, h: 200, format: "webp" };

export function thumbnailUrl(page: ProductList): string | undefined {
  const first = page.items[0];
  return first?.thumbnail ? `${first.thumbnail}?w=${thumb.w}&format=${thumb.format}` : undefined;
}

export function cheapest(page: ProductList): string | undefined {
  return page.items.map((p) => p.min_price).find((price) => price !== undefined);
}

export function nextSync(changes: Changes): string {
  for (const change of changes.changes) {
    if (change.deleted) { console.log("drop", change.id); } else { console.log("keep", change.product?.name); }
  }
  return changes.next;
}

export function failure(body: components["schemas"]["ErrorResponse"]): string {
  return `${body.error.code}: ${body.error.message}`;
}

console.log(query, batch, thumb);
"""

# What the schema forbids must not compile: a price as a number, a currency the rates do not list, an unknown
# field name, an image format not served.
TS_WRONG = """
import type { operations } from "./api";
type ListQuery = NonNullable<operations["listProducts"]["parameters"]["query"]>;
export const a: ListQuery = { min_price: 19.99 };
export const b: ListQuery = { currency: "XXX" };
export const c: ListQuery = { fields: ["colour"] };
type ImageQuery = NonNullable<operations["getImage"]["parameters"]["query"]>;
export const d: ImageQuery = { format: "gif" };
"""


def _tsc(workdir: Path, program: str) -> subprocess.CompletedProcess[str]:
    (workdir / "program.ts").write_text(program)
    return subprocess.run(
        [str(npm_tool("tsc")), "--noEmit", "--strict", "--target", "es2020", "--module", "es2020", "program.ts"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=workdir,
    )


def test_typescript_client_type_checks_a_program(spec_file: Path, tmp_path: Path) -> None:
    generate = subprocess.run(
        [str(npm_tool("openapi-typescript")), str(spec_file), "-o", str(tmp_path / "api.d.ts")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE,
    )
    assert generate.returncode == 0, generate.stderr
    ok = _tsc(tmp_path, TS_PROGRAM)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = _tsc(tmp_path, TS_WRONG)
    assert wrong.returncode != 0
    assert len(re.findall(r"program\.ts\(\d+,\d+\): error", wrong.stdout)) == 4, wrong.stdout


def dart_methods(client: Path) -> set[str]:
    """The public methods of the generated API classes (``Future<Response<T>> name({...})``)."""
    names: set[str] = set()
    for source in (client / "lib" / "src" / "api").glob("*_api.dart"):
        names.update(re.findall(r"^  Future<Response(?:<.+>)?> (\w+)\(", source.read_text(), re.MULTILINE))
    return names


def test_dart_dio_client_methods_are_the_operation_ids(spec_file: Path, tmp_path: Path) -> None:
    generator = VENV_BIN / "openapi-generator-cli"
    if not generator.exists() or shutil.which("java") is None:
        pytest.skip("OpenAPI Generator needs the openapi-generator-cli wheel (make install) and Java")
    out = tmp_path / "dart"
    run = subprocess.run(
        [
            str(generator),
            "generate",
            "-g",
            "dart-dio",
            "-i",
            str(spec_file),
            "-o",
            str(out),
            "--additional-properties",
            "pubName=catalog_client",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    methods = dart_methods(out)
    assert methods == OPERATION_IDS, sorted(methods ^ OPERATION_IDS)
    # Prices stay strings in the generated models (no wrapper classes over anyOf(String, num)).
    models = out / "lib" / "src" / "model"
    assert not list(models.glob("min_price*.dart")) and not list(models.glob("max_price*.dart"))
    summary = (models / "product_summary.dart").read_text()
    assert re.search(r"String\? get minPrice;", summary), summary[:2000]
