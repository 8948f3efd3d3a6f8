"""Shapes of the configuration API (SPEC §4.5): request bodies in, JSON out.

Input serializers check types and lengths only; the rules of a channel target
and of log-source settings live in `apps.projects.services`, which enforces
them for every caller.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.projects.models import Channel, LogSource
from core.api import field_names, object_body
from core.errors import ValidationFailed
from core.validation import clean_name


class StrictCharField(serializers.CharField):
    """A JSON string, never a number or boolean coerced into one (DRF's default).

    DRF's CharField already refuses NUL and lone surrogate characters, which
    the databases cannot store.
    """

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class OneLineTextField(StrictCharField):
    """A name or a title, on the rule of every display name (`core.validation.clean_name`,
    at this field's `max_length`): one line, in NFC, one character shown, no control,
    invisible or text-direction character, as names of keys and projects."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            return clean_name(value, "value", self.error_messages["blank"], self.max_length)
        except ValidationFailed as exc:
            raise serializers.ValidationError(exc.details["fields"]["value"]) from None


@extend_schema_field(OpenApiTypes.OBJECT)
class StrictJsonObjectField(serializers.Field):
    """A JSON object (dict); its contents are checked by the service."""

    default_error_messages = {"not_an_object": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            self.fail("not_an_object")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class LogSourceInputSerializer(serializers.Serializer):
    name = OneLineTextField(max_length=100)
    kind = serializers.ChoiceField(choices=LogSource.Kind.choices)
    settings = StrictJsonObjectField(
        required=False,
        help_text="A JSON object: at most 50 keys and 10 KB as compact UTF-8 JSON, nested at "
        "most 8 levels, no NUL characters. Defaults to {}.",
    )


class ChannelInputSerializer(serializers.Serializer):
    name = OneLineTextField(max_length=100)
    kind = serializers.ChoiceField(choices=Channel.Kind.choices)
    target = StrictCharField(
        max_length=500,
        help_text="Checked for the kind: `email`, one email address; `slack`, an incoming-webhook "
        "URL on https://hooks.slack.com/ or a #channel-name; `webhook`, an https:// URL without "
        "a user name or password, whose host is not a non-public address (loopback, private, "
        "link-local, or one embedded in an IPv6 form) nor a name for a network's inside "
        "(`localhost`, `.local`, `.internal`, `home.arpa`); names are not resolved.",
    )


class LogSourceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=LogSource.Kind.choices)
    settings = serializers.DictField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class ChannelSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Channel.Kind.choices)
    target = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class ConfigSerializer(serializers.Serializer):
    logSources = LogSourceSerializer(many=True, source="log_sources")
    channels = ChannelSerializer(many=True)


def validated(serializer_class: type[serializers.Serializer], data: Any, *, partial=False) -> dict:
    """The validated body, or 400 VALIDATION_ERROR with `details.fields` (camelCase): a body
    that is not a JSON object, or (`partial`: a PATCH) names no field, on `body`; a member
    that is not a field of the serializer on that member, naming the field it resembles
    (`setting`, `coment`) as every body does (`core.api.object_body`)."""
    object_body(data, field_names(serializer_class), at_least_one=partial)
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
