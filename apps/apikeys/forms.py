"""Forms for the key pages. They shape input; apps.apikeys.services validates and decides."""

from __future__ import annotations

from django import forms

from apps.apikeys.keyformat import KeyKind
from core.forms import DashboardForm
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS

#: Service error fields (SPEC camelCase) → form fields.
SERVICE_FIELDS = {
    "name": "name",
    "permissions": "permissions",
    "expiresAt": "expires_at",
    "allowedOrigins": "allowed_origins",
    "graceSeconds": "grace_seconds",
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


class KeyCreateForm(DashboardForm):
    name = forms.CharField(label="Name", max_length=100)
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
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    allowed_origins = forms.CharField(
        label="Allowed origins", required=False, max_length=4000, widget=forms.Textarea
    )

    def __init__(self, *args, kind: KeyKind, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        if kind is KeyKind.PUBLIC:
            # Locked: whatever the browser sends, the form keeps the SDK set.
            self.fields["permissions"].disabled = True
            self.fields["permissions"].initial = list(SDK_LOCKED_PERMISSIONS)
        else:
            del self.fields["allowed_origins"]

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
        return arguments


class RollForm(DashboardForm):
    grace_seconds = forms.TypedChoiceField(
        label="Old key stops working", choices=GRACE_CHOICES, coerce=int, initial=3600
    )


class OriginsForm(DashboardForm):
    allowed_origins = forms.CharField(
        label="Allowed origins", required=False, max_length=4000, widget=forms.Textarea
    )
