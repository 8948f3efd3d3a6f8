"""Forms of the invitation pages; apps.invitations.services decides."""

from __future__ import annotations

from django import forms

from apps.accounts.forms import NEW_PASSWORD_HELP, DashboardForm
from apps.orgs.forms import role_choices
from core.permissions import Role


class InviteForm(DashboardForm):
    email = forms.CharField(
        label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    role = forms.ChoiceField(label="Role", initial=Role.MEMBER)

    def __init__(self, *args, actor_role: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices(actor_role)


class InvitationSignupForm(DashboardForm):
    password = forms.CharField(
        label="Password",
        max_length=4096,
        strip=False,
        help_text=NEW_PASSWORD_HELP,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
