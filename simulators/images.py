"""A vendor's image server: real JPEG and PNG files over HTTP, each request counted (tests and bench).

Vendor catalogs point at images on a CDN; the thumbnail tests and the bench need such a server on this machine,
serving real encoded files (made with Pillow, photo-like so that sizes are realistic) and telling how often each
was asked for.
"""

from __future__ import annotations

import io
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from PIL import Image, ImageDraw, ImageFilter


def photo(width: int, height: int, *, seed: int = 0, alpha: bool = False) -> Image.Image:
    """A product-shot-like picture: a lit gradient backdrop, a few soft shapes, sensor noise (JPEG sizes of real
    photos come from the noise; flat colours would compress to nothing)."""
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    tint = Image.new("RGB", (width, height), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    image = Image.blend(base, tint, 0.6)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(2, min(width, height) // 8), max(3, min(width, height) // 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((width, height), 24).convert("RGB")
    image = Image.blend(image, noise, 0.12)
    if alpha:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).ellipse((width // 8, height // 8, width * 7 // 8, height * 7 // 8), fill=255)
        image.putalpha(mask)
    return image


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


class ImageServer:
    """Serves ``files`` (path -> (body, media type)) on 127.0.0.1; ``hits`` counts requests per path. A path not
    in ``files`` answers 404; ``redirects`` (path -> location) answer 302."""

    def __init__(
        self, files: dict[str, tuple[bytes, str]], redirects: dict[str, str] | None = None, *, port: int = 0
    ) -> None:
        self.files = files
        self.redirects = redirects or {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.hits[path] += 1
                if path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                found = server.files.get(path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, media_type = found
                self.send_response(200)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="images", daemon=True)

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_folder(folder: str, port: int) -> None:
    """Serve every file of ``folder`` as ``/<name>`` on 127.0.0.1:``port`` until killed (the bench's vendor)."""
    import mimetypes
    import time
    from pathlib import Path

    files = {
        f"/{path.name}": (path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        for path in Path(folder).iterdir()
        if path.is_file()
    }
    server = ImageServer(files, port=port)
    with server:
        while True:
            time.sleep(3600)
