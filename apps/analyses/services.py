"""Writes on analyses, follow-ups and feedback (SPEC §4.4).

Each record keeps who created it: the user (JWT) or the API key, with a
snapshot label (email or key prefix, never a secret): a key's survives the key's deletion,
a user's address goes with their account (`core.creators`).
Callers pass a project or analysis they resolved for the caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import transaction

from apps.analyses.models import Analysis, Feedback, FollowUp
from apps.projects.selectors import ProjectLike
from core import throttling
from core.principal import Principal
from core.queries import refuse_when_full

#: An analysis carries all its follow-ups and feedback (SPEC §4.4), on its own and in every
#: page of the list, so each is bounded: a public SDK key added a 10 KB follow-up in 5 ms,
#: and 3,000 of them made every list page 30 MB (found by the DoS audit).
MAX_FOLLOW_UPS = 100
MAX_FEEDBACK = 100

#: What a project's callers store, whatever the credential (an SDK key is public): creations,
#: and follow-ups and feedback together, each an hour and a UTC day (`THROTTLE_RATES`). A
#: follow-up is bounded per analysis, not per project: any old analysis takes 200 more.
CREATE_BUDGET = ("analysis_create_project", "analysis_create_project_day")
REPLY_BUDGET = ("analysis_reply_project", "analysis_reply_project_day")


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
    """A new analysis, queued, with no follow-ups or feedback yet; 429 RATE_LIMITED, nothing
    stored nor counted, past the project's `CREATE_BUDGET`."""
    with _within(CREATE_BUDGET, project.id):
        return Analysis.objects.create(
            project_id=project.id, title=title, input=input, **_authored_by(principal)
        )


@contextlib.contextmanager
def _within(budget: tuple[str, ...], project_id: Any) -> Iterator[None]:
    """A transaction that stores one record in the project, counted in `budget` first
    (429 RATE_LIMITED past it, nothing counted); the count is given back if the
    transaction fails (an analysis already full), so what is counted is what is stored."""
    give_back = throttling.enforce_all(budget, str(project_id))
    try:
        with transaction.atomic():
            yield
    except Exception:
        give_back()
        raise


def create_follow_up(*, principal: Principal, analysis: Analysis, question: str) -> FollowUp:
    """400 VALIDATION_ERROR on `question` past MAX_FOLLOW_UPS; 429 RATE_LIMITED past the
    project's `REPLY_BUDGET`."""
    with _within(REPLY_BUDGET, analysis.project_id):
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
    """400 VALIDATION_ERROR on `rating` past MAX_FEEDBACK; 429 RATE_LIMITED past the
    project's `REPLY_BUDGET`."""
    with _within(REPLY_BUDGET, analysis.project_id):
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
