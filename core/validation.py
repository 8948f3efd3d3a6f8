"""Input rules shared by several services."""

from __future__ import annotations

from typing import Any

from core.errors import ValidationFailed

MAX_NAME_LENGTH = 100


def clean_name(value: Any, field: str = "name", missing: str = "A name is required.") -> str:
    """A display name (organization, project, key): 1 to 100 characters once stripped."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed({field: [missing]})
    value = value.strip()
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationFailed({field: [f"At most {MAX_NAME_LENGTH} characters."]})
    return value
