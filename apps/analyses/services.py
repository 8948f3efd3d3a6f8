"""Writes on analyses, follow-ups and feedback (SPEC §4.4).

Each record keeps who created it: the user (JWT) or the API key, with a
snapshot label (email or key prefix, never a secret): a key's survives the key's deletion,
a user's address goes with their account (`core.creators`).
Callers pass a project or analysis they resolved for the caller.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.analyses.models import Analysis, Feedback, FollowUp
from apps.projects.selectors import ProjectLike
from core.principal import Principal
from core.queries import refuse_when_full

#: An analysis carries all its follow-ups and feedback (SPEC §4.4), on its own and in every
#: page of the list, so each is bounded: a public SDK key added a 10 KB follow-up in 5 ms,
#: and 3,000 of them made every list page 30 MB (found by the DoS audit).
MAX_FOLLOW_UPS = 100
MAX_FEEDBACK = 100


def _authored_by(principal: Principal) -> dict[str, Any]:
    if principal.key is not None:
        return {
            "created_by_type": "key",
            "created_by_key_id": principal.key.id,
            "created_by_label": principal.key.prefix,
        }
    return {
        "created_by_type": "user",
        "created_by_user": principal.user,
        "created_by_label": principal.user.email,
    }


def create_analysis(
    *, principal: Principal, project: ProjectLike, title: str, input: str
) -> Analysis:
    """A new analysis, queued, with no follow-ups or feedback yet."""
    return Analysis.objects.create(
        project_id=project.id, title=title, input=input, **_authored_by(principal)
    )


def create_follow_up(*, principal: Principal, analysis: Analysis, question: str) -> FollowUp:
    with transaction.atomic():
        refuse_when_full(
            Analysis.objects.filter(pk=analysis.pk),
            FollowUp.objects.filter(analysis_id=analysis.pk),
            MAX_FOLLOW_UPS,
            "question",
            f"At most {MAX_FOLLOW_UPS} follow-ups per analysis.",
        )
        return FollowUp.objects.create(
            analysis=analysis, question=question, **_authored_by(principal)
        )


def create_feedback(
    *, principal: Principal, analysis: Analysis, rating: str, comment: str = ""
) -> Feedback:
    with transaction.atomic():
        refuse_when_full(
            Analysis.objects.filter(pk=analysis.pk),
            Feedback.objects.filter(analysis_id=analysis.pk),
            MAX_FEEDBACK,
            "rating",
            f"At most {MAX_FEEDBACK} feedback entries per analysis.",
        )
        return Feedback.objects.create(
            analysis=analysis, rating=rating, comment=comment, **_authored_by(principal)
        )
