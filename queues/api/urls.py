"""/api/v1/ routes of the queues app."""

from django.urls import path

from queues.api import views

urlpatterns = [
    path("queues/", views.QueueListApi.as_view(), name="api-queues"),
    path("queues/<int:pk>/", views.QueueDetailApi.as_view(), name="api-queue"),
    path("agents/", views.AgentListApi.as_view(), name="api-agents"),
]
