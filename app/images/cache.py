"""The thumbnail cache: files in one folder, bounded in bytes, least recently used out first.

A thumbnail costs a vendor download and a decode to make and a file read to serve again, so made ones are kept on
disk (they outlive restarts) and the cache stays under ``CATALOG_IMAGES_CACHE_MB``. Recency is kept in memory and
in the files' modification times (touched on a hit), so after a restart the order is what it was. One process
owns the folder: two nodes on one machine need a folder each.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from pathlib import Path


class DiskCache:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, int] = OrderedDict()  # key -> size, least recent first
        self.size = 0
        self.evictions = 0

    def open(self) -> None:
        """Index what an earlier run left (oldest first); blocking, once at start-up."""
        self.folder.mkdir(parents=True, exist_ok=True)
        found = []
        for entry in os.scandir(self.folder):
            if entry.is_file() and not entry.name.startswith("."):
                stat = entry.stat()
                found.append((stat.st_mtime_ns, entry.name, stat.st_size))
        for _, name, size in sorted(found):
            self._entries[name] = size
            self.size += size
        self._evict()

    def get(self, key: str) -> bytes | None:
        if key not in self._entries:
            return None
        path = self.folder / key
        try:
            body = path.read_bytes()
            os.utime(path)
        except FileNotFoundError:  # removed behind our back: forget it
            self.size -= self._entries.pop(key)
            return None
        self._entries.move_to_end(key)
        return body

    def put(self, key: str, body: bytes) -> None:
        """Written to a temporary file and renamed, so a reader never sees half a thumbnail."""
        if len(body) > self.max_bytes:
            return
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            os.replace(tmp, self.folder / key)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.size += len(body) - self._entries.pop(key, 0)
        self._entries[key] = len(body)
        self._evict()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        while self.size > self.max_bytes and self._entries:
            key, size = self._entries.popitem(last=False)
            self.size -= size
            self.evictions += 1
            (self.folder / key).unlink(missing_ok=True)
