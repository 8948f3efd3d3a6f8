"""Sign-up and login forms. They only shape input; the services decide."""

from __future__ import annotations

from django import forms

from core.forms import DashboardForm, NameField

#: What AUTH_PASSWORD_VALIDATORS ask of a new password, on every form that sets one.
NEW_PASSWORD_HELP = (
    "At least 10 characters, not all digits, not a common password and not too similar to "
    "your email."
)

#: Service error fields (SPEC camelCase) → form field names.
SERVICE_FIELDS = {"email": "email", "password": "password", "organizationName": "organization_name"}


def _current_password(label: str = "Current password", help_text: str = "") -> forms.CharField:
    """The account's password as its owner types it: never stripped; the browser offers the
    saved one."""
    return forms.CharField(
        label=label,
        max_length=4096,
        strip=False,
        help_text=help_text,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class LoginForm(DashboardForm):
    # Wrong credentials keep the email and empty the password: the cursor goes where the
    # typing is (found by a UX review: it landed in the filled email).
    focus_after_failure = "password"

    email = forms.CharField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = _current_password("Password")

    def __init__(self, *args, focus_email: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not focus_email:
            # A page with a message (reset link sent, logged out, password changed) leaves the
            # focus to it (static/js/app.js), so a screen reader reads it: with the email
            # field's autofocus it was never said (an accessibility audit).
            self.fields["email"].widget.attrs.pop("autofocus", None)


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
        help_text=NEW_PASSWORD_HELP,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "required": True}),
    )
    organization_name = NameField(
        label="Organization name",
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "organization", "required": True}),
    )


class PasswordResetRequestForm(DashboardForm):
    email = forms.CharField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )


class NewPasswordForm(DashboardForm):
    password = forms.CharField(
        label="New password",
        max_length=4096,
        strip=False,
        help_text=NEW_PASSWORD_HELP,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
    )


#: Digits and spaces, full-width ones too (a CJK input method's; the server reads them by NFKC).
DIGITS_PATTERN = "[0-9\uff10-\uff19 \u3000]*"


def _code_widget(**attrs) -> forms.TextInput:
    return forms.TextInput(
        attrs={
            "autocomplete": "one-time-code",
            "autocapitalize": "off",
            "spellcheck": "false",
            **attrs,
        }
    )


def _authentication_code(**attrs) -> forms.CharField:
    """A code of the authenticator app, or a recovery code (the login's second step, the
    account's deletion)."""
    return forms.CharField(
        label="Authentication code",
        max_length=64,
        help_text="The 6 digits your authenticator app shows, or one of your recovery codes.",
        widget=_code_widget(**attrs),
    )


class SecondFactorForm(DashboardForm):
    """The login's second step: a code of the authenticator app, or a recovery code."""

    code = _authentication_code(autofocus=True)


class PasswordChangeForm(DashboardForm):
    current_password = _current_password()
    new_password = forms.CharField(
        label="New password",
        max_length=4096,
        strip=False,
        help_text=f"{NEW_PASSWORD_HELP} Every other session is logged out.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


class TwoFactorEnableForm(DashboardForm):
    code = forms.CharField(
        label="Code from the app",
        max_length=64,
        widget=_code_widget(inputmode="numeric", pattern=DIGITS_PATTERN),
    )


class EmailCodeForm(DashboardForm):
    code = forms.CharField(
        label="Code from the email",
        max_length=64,
        widget=_code_widget(inputmode="numeric", pattern=DIGITS_PATTERN),
    )


class TwoFactorDisableForm(DashboardForm):
    password = _current_password(
        "Password", "Your current password, to turn two-factor authentication off."
    )


class DeleteAccountForm(DashboardForm):
    """The account's deletion: the password again (and, with two-factor on, a code), so a
    session alone deletes nothing. Prefixed: the page's two-factor form has a `password`."""

    password = _current_password()
    code = _authentication_code()
    understand = forms.BooleanField(
        label="I understand that my account, and the organizations listed above, are "
        "deleted for good.",
        error_messages={"required": "Tick the box to say you understand it cannot be undone."},
    )

    def __init__(self, *args, two_factor: bool, **kwargs):
        kwargs.setdefault("prefix", "delete")
        super().__init__(*args, **kwargs)
        if not two_factor:
            del self.fields["code"]
