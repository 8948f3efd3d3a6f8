from django.urls import path

from apps.projects import api

urlpatterns = [
    path("config", api.ConfigView.as_view(), name="api-config"),
    path("config/log-sources", api.LogSourceCollectionView.as_view(), name="api-log-sources"),
    path(
        "config/log-sources/<str:log_source_id>",
        api.LogSourceDetailView.as_view(),
        name="api-log-source",
    ),
    path("config/channels", api.ChannelCollectionView.as_view(), name="api-channels"),
    path("config/channels/<str:channel_id>", api.ChannelDetailView.as_view(), name="api-channel"),
]
