"""The one error hierarchy of the service.

Every failure the API can report is a ``CatalogError``; one handler turns it into the one JSON error shape
(``{"error": {"code", "message", "details"}}``). Domain and adapters raise these too, so a vendor failure
deep in a source reaches the client with a meaningful status instead of a bare 500.

    CatalogError
    ├── NotFound                    404
    ├── Conflict                    409
    ├── InvalidInput                422
    ├── InvalidToken                400  (a cursor or change token this API did not issue)
    ├── Gone                        410  (a change token older than the feed keeps: resync)
    ├── PayloadTooLarge             413
    ├── UnsupportedFormat           415  (an image format this build cannot encode)
    ├── Unauthorized                401
    ├── Forbidden                   403
    ├── RateLimited                 429  (a client over its rate limit; Retry-After)
    ├── ServiceUnavailable          503  (queue full, store down, not ready)
    └── VendorError                 502  (anything a vendor did wrong)
        ├── VendorNotFound          404  (the vendor says the item does not exist)
        ├── VendorAuthError         502  (our credentials were refused)
        ├── VendorRateLimited       503  (429 with Retry-After, retries exhausted)
        ├── VendorTimeout           504
        ├── VendorBadResponse       502  (garbage, malformed JSON, unexpected shape, an answer over the limits)
        │   └── ImageRefused        502  (an image too large, too many pixels, or not an image)
        └── VendorAddressRefused    502  (the outbound policy refused the URL or its address)
"""

from __future__ import annotations

from typing import Any


class CatalogError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class NotFound(CatalogError):
    status_code = 404
    code = "not_found"


class Conflict(CatalogError):
    status_code = 409
    code = "conflict"


class InvalidInput(CatalogError):
    status_code = 422
    code = "invalid_input"


class InvalidToken(CatalogError):
    """A 400, not a 422: the token has the documented shape (so it passes schema validation) but its signature
    or content says this API never issued it."""

    status_code = 400
    code = "invalid_token"


class Gone(CatalogError):
    status_code = 410
    code = "resync_required"


class PayloadTooLarge(CatalogError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedFormat(CatalogError):
    status_code = 415
    code = "unsupported_format"


class Unauthorized(CatalogError):
    status_code = 401
    code = "unauthorized"


class Forbidden(CatalogError):
    status_code = 403
    code = "forbidden"


class RateLimited(CatalogError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class ServiceUnavailable(CatalogError):
    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class VendorError(CatalogError):
    status_code = 502
    code = "vendor_error"


class VendorNotFound(VendorError):
    status_code = 404
    code = "vendor_item_not_found"


class VendorAuthError(VendorError):
    code = "vendor_auth_failed"


class VendorRateLimited(VendorError):
    status_code = 503
    code = "vendor_rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class VendorTimeout(VendorError):
    status_code = 504
    code = "vendor_timeout"


class VendorBadResponse(VendorError):
    code = "vendor_bad_response"


class VendorAddressRefused(VendorError):
    """The outbound policy (``app.sources.safety``) refused a URL or the address it resolves to: never retried."""

    code = "vendor_address_refused"


class ImageRefused(VendorBadResponse):
    """A vendor image not thumbnailed: over the byte or pixel limit (a decompression bomb), or not an image."""

    code = "image_refused"
