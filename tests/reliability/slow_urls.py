"""The product's URLs plus GET /slow, which answers after SLOW_SECONDS; on its way in it
creates the file SLOW_STARTED_FILE names (when set), so a test knows the request is in a
worker."""

import os
import time
from pathlib import Path

from django.http import HttpResponse
from django.urls import path

from sigsentry.urls import handler400, handler403, handler404, handler500  # noqa: F401
from sigsentry.urls import urlpatterns as product_urlpatterns

SLOW_SECONDS = 2.0


def slow(request):
    if started := os.environ.get("SLOW_STARTED_FILE"):
        Path(started).touch()
    time.sleep(SLOW_SECONDS)
    return HttpResponse("finished", content_type="text/plain")


urlpatterns = [path("slow", slow), *product_urlpatterns]
