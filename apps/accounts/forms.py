"""Sign-up and login forms. They only shape input; the services decide."""

from __future__ import annotations

from django import forms

from core.forms import DashboardForm

#: Service error fields (SPEC camelCase) → form field names.
SERVICE_FIELDS = {"email": "email", "password": "password", "organizationName": "organization_name"}


class LoginForm(DashboardForm):
    email = forms.CharField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label="Password",
        max_length=4096,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class SignupForm(DashboardForm):
    """Every rule lives in `services.signup`, which reports all fields' errors at once.

    So the fields are not required here (an empty value reaches the service and
    comes back as that field's error); browsers still see them as required.
    """

    mark_optional = False

    email = forms.CharField(
        label="Email",
        max_length=254,
        required=False,
        widget=forms.EmailInput(
            attrs={"autocomplete": "email", "autofocus": True, "required": True}
        ),
    )
    password = forms.CharField(
        label="Password",
        max_length=4096,
        strip=False,
        required=False,
        help_text="At least 10 characters; not a common password.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "required": True}),
    )
    organization_name = forms.CharField(
        label="Organization name",
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "organization", "required": True}),
    )
