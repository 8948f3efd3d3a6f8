"""The base of every dashboard form."""

from __future__ import annotations

import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.forms.boundfield import BoundField

from core.validation import (
    MAX_NAME_LENGTH,
    NAME_MISSING,
    UNSHOWN_MESSAGE,
    has_unshown_characters,
    shows_something,
)


class DashboardBoundField(BoundField):
    """A field as the dashboard draws it. After a failed submit the first invalid field
    takes the focus (`autofocus`, moved there from whichever field has it by default, as
    sign-up's email), so keyboard and screen reader users land on the problem. Each of its
    errors has its own id, `<auto_id>_error` then `_error_2`, … (includes/field.html), and
    the input is described by all of them."""

    @property
    def error_items(self) -> list[tuple[str, str]]:
        """(id, message) of each error, for a template to draw: `<p id="{{ id }}">`."""
        if not self.auto_id:
            return [("", message) for message in self.errors]
        return [
            (f"{self.auto_id}_error" + (f"_{n}" if n > 1 else ""), message)
            for n, message in enumerate(self.errors, 1)
        ]

    @property
    def error_ids(self) -> str:
        """The ids of its errors, for the `aria-describedby` of an input drawn by hand."""
        return " ".join(error_id for error_id, _ in self.error_items if error_id)

    @property
    def aria_describedby(self):
        described = super().aria_describedby
        if described is None or not self.errors:
            return described
        # Django names the first error's id only.
        return " ".join([*described.split(), *self.error_ids.split()[1:]])

    def build_widget_attrs(self, attrs, widget=None):
        attrs = super().build_widget_attrs(attrs, widget)
        first = self.form.first_invalid
        failed_whole = first is None and self.form.is_bound and bool(self.form.non_field_errors())
        if first is not None:
            attrs["autofocus"] = self.name == first
        elif failed_whole and self.form.focus_after_failure is not None:
            attrs["autofocus"] = self.name == self.form.focus_after_failure
        if failed_whole and self._takes_focus(attrs, widget):
            # Only the form as a whole failed (a wrong password): the field that takes the
            # focus is described by the form's error box, so it is read out with it.
            described = attrs.get("aria-describedby", "")
            attrs["aria-describedby"] = f"{self.form.alert_id} {described}".strip()
        return attrs

    def _takes_focus(self, attrs, widget) -> bool:
        """Whether the input is drawn with `autofocus` (by these attrs or its widget's)."""
        return bool(attrs.get("autofocus", (widget or self.field.widget).attrs.get("autofocus")))


class DashboardForm(forms.Form):
    """Labels exactly as written (no trailing colon); errors from services land on fields."""

    #: Whether field.html marks fields that are not required as "optional".
    mark_optional = True
    #: The field that takes the focus when only the form as a whole failed; None keeps the
    #: one its widget names.
    focus_after_failure: str | None = None
    bound_field_class = DashboardBoundField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    @property
    def alert_id(self) -> str:
        """The id of the form's own error box (includes/form_errors.html)."""
        return f"{self.prefix}-form-alert" if self.prefix else "form-alert"

    def add_service_errors(self, fields: dict[str, list[str]], mapping: dict[str, str]) -> None:
        for name, messages in fields.items():
            field = mapping.get(name)
            for message in messages:
                self.add_error(field if field in self.fields else None, message)

    @property
    def first_invalid(self) -> str | None:
        """The name of the first field with an error, in the order the page shows them (the
        form's field order); None before a submit or when only the form as a whole failed.
        Templates that draw a field by hand put `autofocus` on it when it is this one."""
        if not self.is_bound:
            return None
        return next((name for name in self.fields if self.errors.get(name)), None)


def _one_line(value: str) -> None:
    if not shows_something(value):
        raise ValidationError(NAME_MISSING)
    if has_unshown_characters(value):
        raise ValidationError(UNSHOWN_MESSAGE)


class NameField(forms.CharField):
    """A display name: the services' rule (`core.validation.clean_name`) checked with the
    form's own, so a form with another error shows the name's too, in one submit."""

    default_validators = [_one_line]

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_NAME_LENGTH)
        super().__init__(**kwargs)

    def to_python(self, value):
        """Stripped and in NFC, as the services store it, before the length is counted."""
        return unicodedata.normalize("NFC", super().to_python(value))

    def widget_attrs(self, widget):
        """`dir="auto"`: a name typed in Arabic or Hebrew is shown right to left as it is
        typed, as the pages show it (in a `<bdi>`), not in the page's left-to-right order."""
        return {**super().widget_attrs(widget), "dir": "auto"}
