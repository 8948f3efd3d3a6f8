"""Shapes of the analyses API (SPEC §4.4): request bodies in, JSON out."""

from __future__ import annotations

from rest_framework import serializers

from apps.analyses.models import Feedback
from apps.projects.serializers import OneLineTextField, StrictCharField


class AnalysisInputSerializer(serializers.Serializer):
    title = OneLineTextField(max_length=200)
    input = StrictCharField(max_length=100_000, trim_whitespace=False)


class FollowUpInputSerializer(serializers.Serializer):
    question = StrictCharField(max_length=10_000)


class FeedbackInputSerializer(serializers.Serializer):
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices)
    comment = StrictCharField(
        max_length=10_000, required=False, allow_blank=True, allow_null=True, default=""
    )

    def validate_comment(self, value: str | None) -> str:
        return value or ""


class CreatedBySerializer(serializers.Serializer):
    """`{"type": "key", "prefix"}` or `{"type": "user", "email"}`."""

    type = serializers.ChoiceField(choices=["user", "key"])
    prefix = serializers.CharField(required=False)
    email = serializers.CharField(required=False)


class FollowUpSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    question = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    createdBy = CreatedBySerializer(source="created_by")


class FeedbackSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices)
    comment = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    createdBy = CreatedBySerializer(source="created_by")


class AnalysisSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    projectId = serializers.UUIDField(source="project_id")
    title = serializers.CharField()
    input = serializers.CharField()
    status = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    createdBy = CreatedBySerializer(source="created_by")
    followUps = FollowUpSerializer(many=True, source="follow_ups.all")
    feedback = FeedbackSerializer(many=True, source="feedback.all")


class AnalysisPageSerializer(serializers.Serializer):
    """One page of the cursor-paginated list (for the API schema)."""

    results = AnalysisSerializer(many=True)
    next = serializers.URLField(allow_null=True)
