"""Forms for projects and members; the services in apps.orgs.services decide."""

from __future__ import annotations

from django import forms

from core.forms import DashboardForm
from core.permissions import Role


class ProjectForm(DashboardForm):
    name = forms.CharField(label="Project name", max_length=100)


def role_choices(actor_role: str) -> list[tuple[str, str]]:
    """Only owners hand out the owner role."""
    return [
        (value, label)
        for value, label in Role.choices
        if actor_role == Role.OWNER or value != Role.OWNER
    ]


class MemberAddForm(DashboardForm):
    email = forms.CharField(
        label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    role = forms.ChoiceField(label="Role", initial=Role.MEMBER)

    def __init__(self, *args, actor_role: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices(actor_role)


class MemberRoleForm(DashboardForm):
    role = forms.ChoiceField(label="Role", choices=Role.choices)
