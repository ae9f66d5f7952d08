"""The `pagination` keys of an api source (sources.yaml reference), one model per style, and the strict base every
spec model shares."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # Unknown keys are refused: a typo like `primary_keys` must not silently do nothing.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PagePagination(Strict):
    type: Literal["page"]
    page_param: str = "page"
    size_param: str | None = "per_page"
    size: int | None = Field(default=100, gt=0)
    start: int = 1


class OffsetPagination(Strict):
    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, gt=0)


class CursorPagination(Strict):
    type: Literal["cursor"]
    cursor_param: str = "cursor"
    cursor_path: str = Field(
        ...,
        description="Dot path to the next cursor in the body; `$last.<field>` reads it "
        "from the last record (Stripe's starting_after).",
    )
    has_more_path: str | None = Field(
        default=None, description="Dot path to a boolean that says another page exists."
    )


class LinkHeaderPagination(Strict):
    type: Literal["link_header"]


class NextUrlPagination(Strict):
    type: Literal["next_url"]
    next_path: str = "next"


class NoPagination(Strict):
    type: Literal["none"]


Pagination = Annotated[
    PagePagination
    | OffsetPagination
    | CursorPagination
    | LinkHeaderPagination
    | NextUrlPagination
    | NoPagination,
    Field(discriminator="type"),
]
