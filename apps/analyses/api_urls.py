from django.urls import path

from apps.analyses import api

urlpatterns = [
    path("analyses", api.AnalysisCollectionView.as_view(), name="api-analyses"),
    path("analyses/<str:analysis_id>", api.AnalysisDetailView.as_view(), name="api-analysis"),
    path(
        "analyses/<str:analysis_id>/follow-ups",
        api.FollowUpCollectionView.as_view(),
        name="api-analysis-follow-ups",
    ),
    path(
        "analyses/<str:analysis_id>/feedback",
        api.FeedbackCollectionView.as_view(),
        name="api-analysis-feedback",
    ),
]
