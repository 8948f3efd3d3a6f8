"""The WSGI application's one wrapper: bodies sent chunked reach Django.

Django reads a request body to its `Content-Length`, so one sent with `Transfer-Encoding:
chunked` and no length (a Go or Node client streaming its JSON, `requests` with a
generator) read as empty: the client was told a field was missing from a body it sent.
gunicorn takes the chunks off `wsgi.input`; this reads that body, at most
DATA_UPLOAD_MAX_MEMORY_SIZE bytes, and hands it on with its length. A longer one is marked
(`CHUNKED_BODY_TOO_LARGE`) and refused by `core.middleware.RequestSizeLimitMiddleware`
before anything reads it, whatever the endpoint's own limit (GitHub's reports, the one
endpoint allowing more, come with a length).
"""

from __future__ import annotations

import io

from django.conf import settings

#: The environ key (a WSGI extension) marking a chunked body longer than any it reads.
CHUNKED_BODY_TOO_LARGE = "sigsentry.chunked_body_too_large"


def reading_chunked_bodies(application):
    def read_then_call(environ, start_response):
        if (
            "CONTENT_LENGTH" not in environ
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read(-1 if limit is None else limit + 1)
            if limit is not None and len(body) > limit:
                environ[CHUNKED_BODY_TOO_LARGE] = True
                body = b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return application(environ, start_response)

    return read_then_call
