"""Input rules shared by several services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from core.errors import ValidationFailed

MAX_NAME_LENGTH = 100

T = TypeVar("T")


def clean_name(value: Any, field: str = "name", missing: str = "A name is required.") -> str:
    """A display name (organization, project, key): 1 to 100 characters once stripped."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed({field: [missing]})
    value = value.strip()
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationFailed({field: [f"At most {MAX_NAME_LENGTH} characters."]})
    return value


class FieldErrors:
    """Runs several validators and reports every failing field in one VALIDATION_ERROR,
    so a form can show each message next to its field."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def check(self, validate: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """`validate(...)`'s result, or None after recording its field messages."""
        try:
            return validate(*args, **kwargs)
        except ValidationFailed as exc:
            for field, messages in exc.details["fields"].items():
                self.fields.setdefault(field, []).extend(messages)
            return None

    def failed(self, field: str) -> bool:
        return field in self.fields

    def raise_any(self) -> None:
        if self.fields:
            raise ValidationFailed(self.fields)
