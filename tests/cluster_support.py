"""Several API nodes of the distributed runtime behind a real load balancer (Debian's nginx), and the vendor-side
helpers the multi-node tests share (a Shopify webhook as the platform sends it, a node's stored prices)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from app.domain.webhooks import sign
from tests.support import Sim, all_products, free_port

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def nginx_binary() -> str | None:
    """Debian's nginx (``make install`` installs it: apt-get install nginx-light), or None."""
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class Nginx:
    """nginx in the foreground, round robin over ``upstreams``; it names the node that answered (``X-Upstream``)."""

    def __init__(self, binary: str, upstreams: list[int], folder: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstreams)
        kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        temp = "".join(f"  {kind}_temp_path {folder}/{kind};\n" for kind in kinds)
        (folder / "nginx.conf").write_text(
            f"""daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
{temp}  upstream nodes {{
{servers}  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://nodes;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout;
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        command = [self.binary, "-e", str(self.folder / "error.log"), "-p", str(self.folder)]
        self.proc = subprocess.Popen(
            [*command, "-c", str(self.folder / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{self.base_url}/health", timeout=1)
                return self
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(self.folder / 'error.log').read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def content_hash(client: httpx.Client) -> str:
    """A digest of every product this node serves, as it serves them (each node reads its own SQLite file)."""
    products = sorted(all_products(client), key=lambda p: str(p["id"]))
    return hashlib.sha256(json.dumps(products, sort_keys=True).encode()).hexdigest()


def metric(client: httpx.Client, name: str) -> float | None:
    """One value of a node's ``/metrics`` (Prometheus text), None when absent."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


WEBHOOK_SECRET = "whsec_two_nodes"


def shopify_webhook(
    client: httpx.Client, vendor_id: str, product: dict[str, Any], *, topic: str, delivery_id: str
) -> httpx.Response:
    """A Shopify webhook as the platform sends it: the raw JSON body, its HMAC and the Shopify headers."""
    body = json.dumps(product).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": sign(body, WEBHOOK_SECRET),
        "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": delivery_id,
    }
    return client.post(f"/webhooks/shopify/{vendor_id}", content=body, headers=headers)


def shop_token(sim: Sim) -> dict[str, str]:
    return {"X-Shopify-Access-Token": sim.vendor_body("x")["credentials"]["access_token"]}


def shop_items(sim: Sim, count: int) -> list[int]:
    response = httpx.get(
        f"{sim.base_url}/admin/api/2024-01/products.json", params={"limit": count}, headers=shop_token(sim)
    )
    assert response.status_code == 200, response.text
    return [int(p["id"]) for p in response.json()["products"]]


def priced_product(sim: Sim, item: int, price: str) -> dict[str, Any]:
    """The vendor's own product JSON (from its admin API) with every variant at ``price``, stamped now as Shopify
    stamps a changed product. The simulator itself keeps the old price: without the stamp, the next scheduled sync
    (same vendor time, fetched later) would rightly put it back, a race with the test's reading of every node."""
    response = httpx.get(f"{sim.base_url}/admin/api/2024-01/products/{item}.json", headers=shop_token(sim))
    assert response.status_code == 200, response.text
    product: dict[str, Any] = response.json()["product"]
    stamp = datetime.now(UTC).isoformat()
    product["updated_at"] = stamp
    for variant in product["variants"]:
        variant["price"] = price
        variant["updated_at"] = stamp
    return product


def stored_prices(client: httpx.Client, vendor_id: str, item: int) -> set[Decimal] | None:
    """This node's stored prices of the vendor's offers of ``item`` (None while it holds none): read locally only."""
    response = client.get(f"/vendors/{vendor_id}/products/{item}", params={"wait_ms": 0})
    if response.status_code != 200:
        return None
    offers = [
        o
        for o in response.json()["offers"]
        if o["vendor_id"] == vendor_id and str(item) in (o["vendor_product_id"], o["parent_id"])
    ]
    return {Decimal(o["price"]) for o in offers} or None
