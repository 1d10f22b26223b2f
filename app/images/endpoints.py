"""GET /images/{image_id}: a product image resized for a phone, as WebP, AVIF or JPEG."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from app.api.deps import ContainerDep
from app.api.errors import errors
from app.api.responses import not_modified
from app.bootstrap import Container
from app.catalog.params import exact_int
from app.domain.images import ID_PATTERN
from app.errors import InvalidInput, RateLimited
from app.images.pillow import MAX_SIDE
from app.images.service import ImageService

router = APIRouter(tags=["images"])


def _side(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "description": f"Largest {'width' if name == 'w' else 'height'} in pixels; the image keeps its aspect ratio "
        f"and is never enlarged. Neither `w` nor `h`: the original's size, at most {MAX_SIDE}.",
    }


IMAGE_CONTENT = {
    media: {"schema": {"type": "string", "format": "binary"}} for media in ("image/webp", "image/avif", "image/jpeg")
}


def images_of(container: Container) -> ImageService:
    assert container.images is not None, "build_container sets the image service"
    return container.images


def _size(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = exact_int(raw)
    except ValueError:
        value = None
    if type(value) is not int or not 1 <= value <= MAX_SIDE:
        raise InvalidInput(f"{name} must be an integer from 1 to {MAX_SIDE}", details={"parameter": name})
    return value


@router.get(
    "/images/{image_id}",
    operation_id="getImage",
    response_class=Response,
    responses={
        200: {
            "description": "The image, resized. `ETag` names the image, size and format; `Cache-Control: public, "
            "max-age=..., immutable` (`CATALOG_IMAGES_MAX_AGE_S`).",
            "content": IMAGE_CONTENT,
        },
        304: {"description": "Not modified (`If-None-Match` matched the `ETag`)."},
        **errors(
            404,
            415,
            422,
            429,
            502,
            504,
            s404="No stored product lists this image, or the vendor no longer has it.",
            s429="Too many thumbnails not made yet (each a vendor download) from this client; see `Retry-After`.",
            s415="The format asked for cannot be encoded by this build (AVIF needs a Pillow with libavif).",
            s502="The vendor image could not be used: refused address, over `CATALOG_IMAGES_MAX_BYTES` or "
            "`CATALOG_IMAGES_MAX_PIXELS`, not an image, or the vendor failed.",
            s504="The vendor image did not arrive within `CATALOG_IMAGES_TIMEOUT_S`.",
        ),
    },
    openapi_extra={"parameters": [_side("w"), _side("h")]},
)
async def get_image(
    request: Request,
    container: ContainerDep,
    image_id: Annotated[
        str,
        Path(pattern=ID_PATTERN, description="From a product's `thumbnail` or `thumbnails` (`/images/{image_id}`)."),
    ],
    format: Annotated[Literal["webp", "avif", "jpeg"], Query(description="Encoding of the answer.")] = "webp",
) -> Response:
    """A product image fitted inside `w` x `h`. Only images that stored products list have an id, so nothing
    else can be fetched through this."""
    service = images_of(container)
    variant = service.variant(image_id, _size(request, "w"), _size(request, "h"), format)
    headers = {
        "ETag": variant.etag,
        "Cache-Control": f"public, max-age={container.settings.images_max_age_s}, immutable",
        # already compressed: the gzip middleware would only spend CPU
        "Content-Encoding": "identity",
    }
    if not_modified(request, variant.etag):
        return Response(status_code=304, headers=headers)
    if variant.key not in service.cache:
        limits = container.limits
        if (wait := limits.thumbnails.take(limits.clients.of(request))) is not None:
            raise RateLimited("too many thumbnails not made yet from this client; retry later", retry_after=wait)
    thumbnail = await service.thumbnail(variant)
    headers["X-Cache"] = "hit" if thumbnail.cached else "miss"
    return Response(thumbnail.body, media_type=thumbnail.media_type, headers=headers)
