"""`POST /v1/secret-scanning/github`: GitHub reports SigSentry keys found in public code.

Order: a body over MAX_REPORT_BYTES is refused unread (400, by
core.middleware.RequestSizeLimitMiddleware), so is a client past its failed
credentials (429, `failed_auth_ip`: a bad signature counts), and so is one whose
headers carry no signature or name no configured key (401 SIGNATURE_INVALID) once
the keys were fetched again if GitHub may have rotated its key (`_claim`); the
signature over the raw body is checked before anything else reads it (401, nothing
happens); then the body must be a JSON list of at most 1000 `{token, type, url,
source}` objects (400; an odd item within it is made the best of, `parse_report`);
then every token is handled as a leak report (secret keys revoked, SDK keys flagged,
the `url` in the audit event, owners emailed by the worker) in one query, and the
answer labels each token for GitHub.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.apikeys.leaks import LeakCandidate, candidate_digest, handle_leak_reports
from apps.secretscanning import github, keysource
from core import throttling
from core.api import ApiView
from core.errors import SignatureInvalid, ValidationFailed, without_credentials
from core.net import client_ip
from core.openapi import THROTTLED, WRONG_SIGNATURE, error_responses

MAX_TOKENS = 1000
FIELD_LIMITS = {"token": 512, "type": 100, "url": 2048, "source": 100}
FIELDS = [(name, limit) for name, limit in FIELD_LIMITS.items() if name != "token"]
REPORTER = "GitHub secret scanning"

logger = logging.getLogger("sigsentry.secretscanning")

#: The endpoint's body limit. A full report (MAX_TOKENS items, every field at its limit,
#: in ASCII as GitHub sends it: tokens, types and sources are ASCII, URLs percent-encoded)
#: is 2.8 MB, over DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB), which refused such a signed report
#: before its signature was checked. Nothing reads a body before its headers name a
#: configured key and carry a signature (`github.claim_of`).
MAX_REPORT_BYTES = 4 * 1024 * 1024


def parse_report(body: bytes) -> list[dict[str, str]]:
    """A signed report's items, each `{token, type, url, source}` as text.

    Only a body that is not a JSON list of at most MAX_TOKENS is refused (400). Within it,
    an odd item never costs the others their handling: GitHub answers a refusal by sending
    the same report again, so one item with a null `url` or a long percent-encoded path
    would leave every real key in the batch live. An item with no text `token` is skipped
    (there is nothing to label); a field that is not text is empty; one over its limit is
    cut there (a token over it is no SigSentry key: labelled false_positive); NUL, which
    PostgreSQL cannot store, and lone surrogates, which UTF-8 cannot encode, are dropped.
    """
    try:
        items = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed({"body": ["Send a JSON array."]}) from exc
    if not isinstance(items, list):
        raise ValidationFailed({"body": ["Send a JSON array."]})
    if len(items) > MAX_TOKENS:
        raise ValidationFailed({"body": [f"At most {MAX_TOKENS} tokens per report."]})
    return [
        {"token": item["token"]} | {name: _text(item.get(name), limit) for name, limit in FIELDS}
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("token"), str)
        and not _SURROGATE.search(item["token"])
    ]


#: A lone surrogate (`"\ud800"` is valid JSON): UTF-8 cannot encode it, so it can neither be
#: stored nor echoed back in a label. A token holding one is no key and is skipped.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: Any, limit: int) -> str:
    return _SURROGATE.sub("", value.replace("\x00", ""))[:limit] if isinstance(value, str) else ""


class ReportItemSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=512)
    type = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=2048, help_text="Where GitHub found the token.")
    source = serializers.CharField(max_length=100)


class LabelSerializer(serializers.Serializer):
    token_raw = serializers.CharField()
    token_type = serializers.CharField()
    label = serializers.ChoiceField(choices=["true_positive", "false_positive"])


class GitHubSecretScanningView(ApiView):
    authentication_classes = []
    permission_classes = []
    #: Read by core.middleware.RequestSizeLimitMiddleware, which refuses anything longer.
    max_body_size = MAX_REPORT_BYTES

    @extend_schema(
        operation_id="secret_scanning_github",
        summary="GitHub secret-scanning partner endpoint",
        description=(
            "Called by GitHub with a signed list of tokens it found in public code (at most "
            "1000). Secret keys among them are revoked, SDK keys flagged; each token is "
            "labelled `true_positive` (a SigSentry key) or `false_positive`."
        ),
        tags=["keys"],
        parameters=[
            OpenApiParameter(github.KEY_ID_HEADER, str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter(
                github.SIGNATURE_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="Base64 ECDSA P-256 / SHA-256 signature of the raw body.",
            ),
        ],
        request=ReportItemSerializer(many=True),
        responses={
            200: LabelSerializer(many=True),
            **error_responses(400, 401, 429, described={401: WRONG_SIGNATURE, 429: THROTTLED}),
        },
    )
    def post(self, request):
        # A bad signature is a failed credential: counted per client IP before the check, as
        # GitHub's key identifiers are public and anyone can have 4 MiB read and verified.
        with throttling.counting_failures(("failed_auth_ip", client_ip(request))):
            claim = _claim(request)
            if claim is None:
                raise SignatureInvalid()  # no configured key could have signed: refused unread
            # Not `request.body`: Django refuses it over DATA_UPLOAD_MAX_MEMORY_SIZE. The
            # middleware has held this body to max_body_size (Content-Length bounds the read).
            body = request.read()
            if not claim.signed(body):
                raise SignatureInvalid()
        items = parse_report(body)
        outcome = handle_leak_reports(
            reports=[LeakCandidate(item["token"], item["url"]) for item in items],
            reporter=REPORTER,
            request=request,
        )
        return Response([_label(item, outcome.known_digests) for item in items])


def _claim(request) -> github.Claim | None:
    """The request's claim; for a key identifier not among the configured keys (GitHub may
    have rotated its key since the last refresh), after fetching the keys if allowed now."""
    key_id = request.headers.get(github.KEY_ID_HEADER)
    signature = request.headers.get(github.SIGNATURE_HEADER)
    claim = github.claim_of(key_id, signature)
    if claim is not None or not key_id or not signature or github.knows(key_id):
        return claim
    if keysource.refresh_on_demand():
        claim = github.claim_of(key_id, signature)
    if claim is None:  # the identifier is public; what to do about it is the operator's
        logger.warning(
            "GitHub secret scanning: unknown key identifier %r; run refresh_github_keys",
            # Whoever sends it chooses it: a key or a token there is still never logged.
            without_credentials(key_id[:80]),
        )
    return claim


def _label(item: dict[str, Any], known: frozenset[str]) -> dict[str, str]:
    digest = candidate_digest(item["token"])
    return {
        "token_raw": item["token"],
        "token_type": item["type"],
        "label": "true_positive" if digest is not None and digest in known else "false_positive",
    }
