"""Schemathesis hooks for the contract test (loaded through ``SCHEMATHESIS_HOOKS``).

A generated vendor body names some ``base_url``; the service would then call it (to probe a mapping, to sync).
Only addresses on this machine may be called here, so every generated ``base_url`` is replaced by the local
simulator's before the request is sent: the fuzzer still chooses everything else.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

LOCAL_VENDOR = os.environ.get("CATALOG_CONTRACT_VENDOR_URL", "http://127.0.0.1:9")


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    if isinstance(body, dict) and "base_url" in body:
        body["base_url"] = LOCAL_VENDOR
