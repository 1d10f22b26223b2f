"""What start-up built is frozen out of the cycle collector while the service runs, and given back at shutdown."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.support import ApiServer, fast_settings


def test_start_up_objects_are_frozen_while_serving_and_unfrozen_after(tmp_path: Path) -> None:
    gc.unfreeze()  # whatever this test process froze before
    with ApiServer(fast_settings(tmp_path / "catalog.db")):
        # The matcher's vocabulary and trees alone are hundreds of thousands of objects.
        assert gc.get_freeze_count() > 100_000
    assert gc.get_freeze_count() == 0
