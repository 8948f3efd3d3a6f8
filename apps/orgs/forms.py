"""Forms for projects and members; the services in apps.orgs.services decide."""

from __future__ import annotations

from django import forms

from core.forms import DashboardForm, NameField
from core.permissions import Role


class ProjectForm(DashboardForm):
    name = NameField(label="Project name")


def role_choices(actor_role: str) -> list[tuple[str, str]]:
    """Only owners hand out the owner role."""
    return [
        (value, label)
        for value, label in Role.choices
        if actor_role == Role.OWNER or value != Role.OWNER
    ]


class MemberRoleForm(DashboardForm):
    role = forms.ChoiceField(label="Role", choices=Role.choices)
