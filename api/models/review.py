"""Request bodies of the review actions: approve, reject, reclassify, merge, move."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import HTTPException
from pydantic import Field, StringConstraints, model_validator

from api.models.cases import Handling
from api.params import Body, SqlInt

if TYPE_CHECKING:
    from api.auth import Principal


# Bad input is answered 422 here, before the store: the store's CaseError means 409,
# a conflict with the case's state (already reviewed), and the two must not mix.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class Actor(Body):
    # The audit trail records the logged-in user, never a name the client types. A client
    # may still send its user's name (older clients did); any other name is refused, so
    # a client never believes it recorded someone the trail does not show.
    actor: Name | None = Field(None, description="optional; if given it must be the logged-in user's name")

    def acting(self, principal: Principal) -> str:
        if self.actor is not None and self.actor != principal.username:
            raise HTTPException(422, f"actor {self.actor!r} is not the logged-in user {principal.username!r}: "
                                     "the audit trail records who is logged in; leave actor out")
        return principal.username


class Approval(Actor):
    handling: Handling | None = Field(None, description="the 721 handling; default: the case's hint")


class Rejection(Actor):
    reason: Literal["false_alarm", "duplicate", "permitted", "other"]
    note: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _other_needs_a_note(self):
        if self.reason == "other" and not (self.note or "").strip():
            raise ValueError("reason 'other' needs a note saying why")
        return self


class Reclassification(Actor):
    event_type: str | None = None
    major: str | None = None
    minor: str | None = None

    @model_validator(mode="after")
    def _something_to_change_to(self):
        if (self.major is None) != (self.minor is None):
            raise ValueError("give both major and minor, or neither")
        if self.event_type is None and self.major is None:
            raise ValueError("nothing to reclassify to: give an event_type, or major and minor")
        return self


class Merge(Actor):
    other_id: SqlInt = Field(..., description="the draft to fold into this one; it is rejected as a duplicate")


class Location(Actor):
    lat: float = Field(..., ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(..., ge=-180, le=180, allow_inf_nan=False)
