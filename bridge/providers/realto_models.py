"""re.alto platform API payload models: guided onboarding sessions (seed 003) and entity commands
(providers-wave2.md §2.1). Gates only (`extra="allow"`, everything but `id` optional and nullable): what
is stored is each body as sent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

COMMAND_STATUSES = ("Pending", "Triggered", "Sent", "Succeeded", "Failed", "Canceled")
COMMAND_TERMINAL = frozenset({"Succeeded", "Failed", "Canceled"})
COMMAND_TYPES = ("Disconnect", "LimitFeedIn", "StartCharging", "StopCharging", "Reset", "StopFeedIn")
# onboardingRequest.status: `Failed` is an assumption (providers.md §2), the other three are documented.
REQUEST_STATUSES = ("Pending", "Succeeded", "Failed", "Canceled")
REQUEST_TERMINAL = frozenset({"Succeeded", "Failed", "Canceled"})


class _Payload(BaseModel):
    # strict: a string where a bool or number belongs is drift worth failing on, not coercing.
    model_config = ConfigDict(extra="allow", strict=True)


class RequestAction(_Payload):
    type: str | None = None
    redirectLink: str | None = None
    documentationLink: str | None = None


class RequestError(_Payload):
    code: str | None = None
    message: str | None = None


class Entity(_Payload):
    id: str | None = None
    type: str | None = None


class RequestData(_Payload):
    collective: dict[str, Any] | None = None
    entity: Entity | None = None
    tenant: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    client: dict[str, Any] | None = None


class OnboardingRequest(_Payload):
    id: str | None = None
    status: str | None = None
    requestType: str | None = None
    action: RequestAction | None = None
    errors: list[RequestError] | None = None
    data: RequestData | None = None
    created: str | None = None
    principalId: str | None = None
    returnUrl: str | None = None


class GuidedOnboardingSession(_Payload):
    """Seed 003; required/nullability was not published, so all but `id` is optional."""

    id: str = Field(min_length=1)
    companyName: str | None = None
    created: str | None = None
    expired: bool | None = None
    manufacturer: str | None = None
    vin: str | None = None
    url: str | None = None
    onboardingRequest: OnboardingRequest | None = None


class PageMeta(_Payload):
    continuationToken: str | None = None
    pageSize: int | None = None


class SessionPage(_Payload):
    """`{data, links, meta}`; `data` may be null (an empty page), items are checked one by one."""

    data: list[dict[str, Any]] | None = None
    links: dict[str, Any] | None = None
    meta: PageMeta | None = None


class CommandError(_Payload):
    title: str | None = None
    description: str | None = None


class Verification(_Payload):
    status: str | None = None
    completedAt: str | None = None
    error: CommandError | None = None


class Command(_Payload):
    """A command sent to an entity. `status` is kept as a string: an undocumented status is news, not a
    reason to fail the poll (rules are checked against the documented six instead)."""

    id: str = Field(min_length=1)
    entityId: str | None = None
    status: str
    triggerTime: str | None = None
    type: str | None = None
    value: str | None = None
    error: CommandError | None = None
    verification: Verification | None = None
