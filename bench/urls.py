"""The product's URLs plus the benchmark's trivial views under /v1/bench/."""

from django.urls import path

from bench import peers
from sigsentry.urls import handler400, handler403, handler404, handler500  # noqa: F401
from sigsentry.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path("v1/bench/noauth", peers.NoAuthView.as_view()),
    path("v1/bench/round-trip", peers.RoundTripView.as_view()),
    path("v1/bench/redis-round-trip", peers.RedisRoundTripView.as_view()),
    path("v1/bench/ours", peers.OursView.as_view()),
    path("v1/bench/scoped", peers.ScopedView.as_view()),
    path("v1/bench/drf-token", peers.DrfTokenView.as_view()),
    path("v1/bench/drf-api-key", peers.DrfApiKeyView.as_view()),
    path("v1/bench/knox", peers.KnoxView.as_view()),
    path("v1/bench/simplejwt", peers.SimpleJwtView.as_view()),
    *product_urlpatterns,
]
