"""The product's URLs plus GET /slow, which answers after SLOW_SECONDS."""

import time

from django.http import HttpResponse
from django.urls import path

from sigsentry.urls import handler400, handler403, handler404, handler500  # noqa: F401
from sigsentry.urls import urlpatterns as product_urlpatterns

SLOW_SECONDS = 2.0


def slow(request):
    time.sleep(SLOW_SECONDS)
    return HttpResponse("finished", content_type="text/plain")


urlpatterns = [path("slow", slow), *product_urlpatterns]
