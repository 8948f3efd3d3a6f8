from django.urls import path

from apps.analyses import views

urlpatterns = [
    path("projects/<uuid:project_id>/", views.overview, name="project-overview"),
]
