"""The base of every dashboard form."""

from __future__ import annotations

from django import forms


class DashboardForm(forms.Form):
    """Labels exactly as written (no trailing colon); errors from services land on fields."""

    #: Whether field.html marks fields that are not required as "optional".
    mark_optional = True

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def add_service_errors(self, fields: dict[str, list[str]], mapping: dict[str, str]) -> None:
        for name, messages in fields.items():
            field = mapping.get(name)
            for message in messages:
                self.add_error(field if field in self.fields else None, message)
