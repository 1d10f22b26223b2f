"""Change feed bodies."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.catalog.schemas import ProductSummary


class ChangeOut(BaseModel):
    id: str = Field(description="The product's id.")
    deleted: bool = Field(description="The product is gone: drop it from the offline copy.")
    product: ProductSummary | None = Field(description="The product's current list document (null when deleted).")


class ChangePage(BaseModel):
    changes: list[ChangeOut] = Field(description="Products changed since the token, in commit order, each once.")
    next: str = Field(description="Pass as `since` to continue after this page (also when it is empty).")
    more: bool = Field(description="More changes are waiting: ask again at once with `next`.")
