"""GET /api/usage: what replies cost, by model — the caller's key's, or every key's for an admin key."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from streamchat.catalog import Catalog
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody


class UsageQuery(BaseModel):
    since: datetime | None = Field(default=None, description="ISO-8601; replies that ended at or after it "
                                   "(a time without a zone is UTC). Default: from the first.")
    until: datetime | None = Field(default=None, description="ISO-8601; replies that ended before it. "
                                   "Default: up to now.")

    @field_validator("until")
    @classmethod
    def after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and as_stamp(until) < as_stamp(since):
            raise ValueError("until is before since")
        return until


class ModelUsageEntry(BaseModel):
    model: str
    replies: int
    promptTokens: int = Field(description="Tokens the model read (0 where the provider did not say).")
    completionTokens: int = Field(description="Tokens the model wrote (0 where the provider did not say).")


class UsageReport(BaseModel):
    models: list[ModelUsageEntry]


def as_stamp(moment: datetime) -> str:
    """The moment as the ledger writes times (UTC, milliseconds, `Z`), so they compare as strings."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


config = ApiConfig(
    name="Usage",
    method="GET",
    path="/api/usage",
    query=UsageQuery,
    responses={200: UsageReport, 422: ErrorBody},
    description="Replies and tokens by model in [since, until): for the caller's key, or all keys for an admin key.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    query: UsageQuery = req.query
    owner = req.principal.key_id if req.principal is not None and not req.principal.admin else None
    totals = await ctx.service(Catalog).usage(owner, None if query.since is None else as_stamp(query.since),
                                           None if query.until is None else as_stamp(query.until))
    return ApiResponse(200, {"models": [entry.public() for entry in totals]})
