"""What the API answers to OPTIONS (REST_FRAMEWORK's DEFAULT_METADATA_CLASS).

Its own module: DRF reads the setting as `rest_framework.views` is imported, so the class
cannot live beside the views that import it.
"""

from __future__ import annotations

from rest_framework.metadata import SimpleMetadata


class ApiMetadata(SimpleMetadata):
    """DRF's answer to OPTIONS without the view's docstring: that is written for the
    maintainers (found by an HTTP audit: thresholds and padding of the leak-report
    endpoint, to anyone); the `Allow` header and the media types stay."""

    def determine_metadata(self, request, view):
        metadata = super().determine_metadata(request, view)
        metadata.pop("description", None)
        return metadata
