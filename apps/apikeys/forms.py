"""Forms for the key pages. They shape input; apps.apikeys.services validates and decides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from apps.apikeys.guardrails import validate_allowed_ips, validate_allowed_origins
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.validators import validate_expires_at, validate_permissions
from core.errors import ValidationFailed
from core.forms import DashboardForm, NameField
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS

#: Service error fields (SPEC camelCase) → form fields.
SERVICE_FIELDS = {
    "name": "name",
    "permissions": "permissions",
    "expiresAt": "expires_at",
    "allowedOrigins": "allowed_origins",
    "graceSeconds": "grace_seconds",
    "rateLimit": "rate_limit_requests",
    "allowedIps": "allowed_ips",
    "projectIds": "project_ids",
}

PERMISSION_HELP = {
    "analysis:create": "Trigger analyses, ask follow-ups, send feedback",
    "analysis:read": "View analyses",
    "config:read": "View log sources and channels",
    "config:write": "Change log sources and channels",
}

GRACE_CHOICES = [(0, "Now"), (3600, "1 hour"), (86400, "24 hours"), (604800, "7 days")]


def origins_from_text(text: str) -> list[str]:
    """One origin per line (commas tolerated); blank lines ignored."""
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def lines_from_text(text: str) -> list[str]:
    """One entry per line (commas and spaces tolerated); blank lines ignored."""
    return text.replace(",", " ").split()


def check_with(validate: Callable[..., Any], *args: Any) -> None:
    """Run one of the services' own validators (apps.apikeys.guardrails, .validators) on a
    field, so that a form already invalid elsewhere (a rate limit missing its window, no name)
    shows that field's errors too, all at once; the service checks the same again."""
    try:
        validate(*args)
    except ValidationFailed as exc:
        raise forms.ValidationError(
            [message for messages in exc.details["fields"].values() for message in messages]
        ) from exc


class GuardrailsForm(DashboardForm):
    """The optional guardrails of a key (SPEC §4.10), for the create form and the
    "Edit limits" dialog: a rate limit (both numbers or neither), allowed IPs (secret
    and org keys) and projects (org keys; `projects` are the organization's)."""

    # The two inputs of one setting show their errors together: each message names its input.
    rate_limit_requests = forms.IntegerField(
        label="Requests",
        required=False,
        min_value=1,
        max_value=100_000,
        error_messages={
            "invalid": "Enter the number of requests as a whole number.",
            "min_value": "The number of requests must be at least %(limit_value)s.",
            "max_value": "The number of requests must be at most %(limit_value)s.",
        },
    )
    rate_limit_seconds = forms.IntegerField(
        label="per seconds",
        required=False,
        min_value=1,
        max_value=86_400,
        error_messages={
            "invalid": "Enter the window as a whole number of seconds.",
            "min_value": "The window must be at least %(limit_value)s second.",
            "max_value": "The window must be at most %(limit_value)s seconds (one day).",
        },
    )
    allowed_ips = forms.CharField(
        label="Allowed IPs", required=False, max_length=4000, widget=forms.Textarea
    )
    project_ids = forms.MultipleChoiceField(
        label="Projects", required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, kind: KeyKind, projects=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        if kind is KeyKind.PUBLIC:
            del self.fields["allowed_ips"]
        if kind is KeyKind.ORGANIZATION:
            self.fields["project_ids"].choices = [(str(p.id), p.name) for p in projects]
        else:
            del self.fields["project_ids"]

    def clean(self):
        data = super().clean()
        requests, seconds = data.get("rate_limit_requests"), data.get("rate_limit_seconds")
        invalid = self.has_error("rate_limit_requests") or self.has_error("rate_limit_seconds")
        if (requests is None) != (seconds is None) and not invalid:
            self.add_error(
                "rate_limit_requests", "Give both numbers, or leave both empty for no limit."
            )
        return data

    def clean_allowed_ips(self) -> str:
        text = self.cleaned_data["allowed_ips"]
        check_with(validate_allowed_ips, self.kind, lines_from_text(text))
        return text

    @property
    def rate_limit_errors(self) -> list[tuple[str, str]]:
        """The rate limit is one setting in two inputs: its errors, (id, message), show under
        both, and both inputs are described by all of them (`rate_limit_error_ids`)."""
        return [*self["rate_limit_requests"].error_items, *self["rate_limit_seconds"].error_items]

    @property
    def rate_limit_error_ids(self) -> str:
        return " ".join(error_id for error_id, _ in self.rate_limit_errors)

    def guardrail_changes(self) -> dict:
        """The guardrails as `update_key` (and, renamed, `mint_key`) take them."""
        data = self.cleaned_data
        requests, seconds = data.get("rate_limit_requests"), data.get("rate_limit_seconds")
        changes: dict = {
            "rateLimit": None if requests is None else {"requests": requests, "perSeconds": seconds}
        }
        if "allowed_ips" in self.fields:
            changes["allowedIps"] = lines_from_text(data.get("allowed_ips", ""))
        if "project_ids" in self.fields:
            changes["projectIds"] = list(data.get("project_ids", []))
        return changes


def expiry_floor(now: datetime) -> str:
    """The first minute an expiry picked now can take: the next one (this one has begun)."""
    return datetime_local(now.replace(second=0, microsecond=0) + timedelta(minutes=1))


def datetime_local(moment: datetime) -> str:
    """A UTC moment as an `<input type="datetime-local">` value, to the minute (cut down)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


class KeyCreateForm(GuardrailsForm):
    #: As the page shows them: the first invalid one takes the focus (core.forms).
    field_order = ["name", "expires_at", "permissions", "allowed_origins"]

    name = NameField(label="Name")
    permissions = forms.MultipleChoiceField(
        label="Permissions",
        choices=[(p, p) for p in ALL_PERMISSIONS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    # A naive value is read in the current time zone, which is UTC (settings.TIME_ZONE).
    expires_at = forms.DateTimeField(
        label="Expires (UTC)",
        required=False,
        # Shown by _create_form.html unless a lifetime policy applies; with it Django
        # describes the input by the help (`<auto_id>_helptext`) as well as its errors.
        help_text="Date and time in UTC. Leave empty for a key that does not expire.",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(
            # data-utc-datetime: static/js/app.js refuses a date without its time (the
            # browser sends nothing for it: no expiry) and says the value in local time.
            attrs={"type": "datetime-local", "data-utc-datetime": True},
            format="%Y-%m-%dT%H:%M",
        ),
    )
    allowed_origins = forms.CharField(
        label="Allowed origins", required=False, max_length=4000, widget=forms.Textarea
    )

    def __init__(self, *args, kind: KeyKind, projects=(), **kwargs):
        super().__init__(*args, kind=kind, projects=projects, **kwargs)
        if kind is KeyKind.PUBLIC:
            # Locked: whatever the browser sends, the form keeps the SDK set.
            self.fields["permissions"].disabled = True
            self.fields["permissions"].initial = list(SDK_LOCKED_PERMISSIONS)
        else:
            del self.fields["allowed_origins"]

    def clean_permissions(self) -> list[str]:
        permissions = self.cleaned_data["permissions"]
        if not self.locked:
            check_with(validate_permissions, self.kind, list(permissions))
        return permissions

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        check_with(validate_expires_at, expires_at, timezone.now())
        return expires_at

    def bound_expiry(self, now: datetime, latest: datetime | None) -> None:
        """The expiry's picker from the next minute to `latest` (the lifetime policy's, if
        any), in the field's UTC: the calendar greys out the days the server refuses, not
        only its message after the submit. The server still decides (a page left open)."""
        attrs = self.fields["expires_at"].widget.attrs
        attrs["min"] = expiry_floor(now)
        if latest is not None and not self.locked:
            attrs["max"] = datetime_local(latest)

    def clean_allowed_origins(self) -> str:
        text = self.cleaned_data["allowed_origins"]
        check_with(validate_allowed_origins, self.kind, origins_from_text(text))
        return text

    @property
    def locked(self) -> bool:
        return self.kind is KeyKind.PUBLIC

    def permission_options(self) -> list[dict]:
        chosen = set(SDK_LOCKED_PERMISSIONS if self.locked else self["permissions"].value() or [])
        return [
            {
                "value": permission,
                "help": PERMISSION_HELP[permission],
                "checked": permission in chosen,
            }
            for permission in ALL_PERMISSIONS
        ]

    def service_arguments(self) -> dict:
        data = self.cleaned_data
        arguments = {
            "name": data["name"],
            "permissions": None if self.locked else list(data["permissions"]),
            "expires_at": data["expires_at"],
        }
        if self.locked:
            arguments["allowed_origins"] = origins_from_text(data.get("allowed_origins", ""))
        guardrails = self.guardrail_changes()
        arguments["rate_limit"] = guardrails["rateLimit"]
        if "allowedIps" in guardrails:
            arguments["allowed_ips"] = guardrails["allowedIps"]
        if "projectIds" in guardrails:
            arguments["project_ids"] = guardrails["projectIds"]
        return arguments


class LimitsForm(GuardrailsForm):
    """The "Edit limits" dialog of one key: its current guardrails as initial values."""

    mark_optional = False

    @property
    def project_choices_on_open(self) -> bool:
        """Unbound, its project checkboxes are copied from the page's one list
        (`#project-choices`) when the dialog opens: one list per row made a page of 50 keys
        in an organization of 200 projects 3.3 MB. Sent back with errors, it draws its own."""
        return not self.is_bound

    @classmethod
    def for_key(cls, api_key, kind: KeyKind, projects=(), data=None) -> LimitsForm:
        """The dialog's form for `api_key`. Its project choices are needed only bound (to
        validate a POST and draw its errors): unbound, `projects` is not read."""
        initial = {
            "rate_limit_requests": api_key.rate_limit_requests,
            "rate_limit_seconds": api_key.rate_limit_seconds,
            "allowed_ips": "\n".join(api_key.allowed_ips),
            "project_ids": list(api_key.project_ids),
        }
        return cls(
            data,
            kind=kind,
            projects=projects if data is not None else (),
            initial=initial,
            auto_id=f"limits-{api_key.id}-%s",
        )


class RollForm(DashboardForm):
    """A key row's Roll dialog. Sent back with errors, the dialog reopens with them; its
    error ids are the key's (`for_key`), as a page has one dialog per row."""

    grace_seconds = forms.TypedChoiceField(
        label="Old key stops working",
        choices=GRACE_CHOICES,
        coerce=int,
        initial=3600,
        error_messages={
            "required": "Choose when the old key stops working.",
            "invalid_choice": "Choose when the old key stops working.",
        },
    )
    # Sent by secret and org keys' roll forms (empty: no expiry); an SDK key's successor gets
    # the old key's lifetime from now.
    expires_at = forms.DateTimeField(
        label="New key expires (UTC)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )

    @classmethod
    def for_key(cls, api_key, data=None) -> RollForm:
        return cls(data, auto_id=f"roll-{api_key.id}-%s")


class PolicyForm(DashboardForm):
    key_max_lifetime_days = forms.IntegerField(
        label="Maximum key lifetime (days)", required=False, min_value=1, max_value=3650
    )


class OriginsForm(DashboardForm):
    """An SDK key row's Origins dialog; sent back with errors, the dialog reopens with them."""

    allowed_origins = forms.CharField(
        label="Allowed origins", required=False, max_length=4000, widget=forms.Textarea
    )

    @classmethod
    def for_key(cls, api_key, data=None) -> OriginsForm:
        return cls(data, auto_id=f"origins-{api_key.id}-%s")
