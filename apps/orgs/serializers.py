"""Serializers shared by the organization and account APIs."""

from __future__ import annotations

from rest_framework import serializers


class UserRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
