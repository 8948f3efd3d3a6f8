"""Who is calling: the authenticated principal of a `/v1` request or a dashboard page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


@dataclass(slots=True)
class Principal:
    """The authenticated caller: a user (JWT) or an API key. `request.user` under /v1."""

    user: AbstractBaseUser | None = None
    #: The key record of `apps.apikeys.selectors.key_by_digest` (API keys).
    key: Any = None
    #: The `AuthSession` (JWT sessions).
    session: Any = None
    #: Roles by organization id, filled as projects are resolved for a user.
    roles: dict[uuid.UUID, str] = field(default_factory=dict)

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self) -> uuid.UUID:
        return self.key.id if self.key is not None else self.user.pk  # type: ignore[union-attr]

    @property
    def label(self) -> str:
        return self.key.prefix if self.key is not None else self.user.email  # type: ignore[union-attr]


#: The `request.META` key (a WSGI environ extension) holding the request's `AuthDecision`.
AUTH_DECISION = "sigsentry.auth"


@dataclass(slots=True)
class AuthDecision:
    """What authentication decided: `ok` or a SPEC §3 code, and the key or user it names.

    Never holds a credential or digest beyond the key record's own (which the
    log line does not write).
    """

    outcome: str
    key: Any = None
    user: Any = None
    #: Whether authentication accepted the credential (a later refusal, such as a
    #: missing permission, changes `outcome` but not this).
    accepted: bool = False
