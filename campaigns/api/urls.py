"""/api/v1/ routes of the campaigns app."""

from django.urls import path

from campaigns.api import views

urlpatterns = [
    path("campaigns/", views.CampaignsApi.as_view(), name="api-campaigns"),
    path("campaigns/<int:pk>/", views.CampaignDetailApi.as_view(), name="api-campaign"),
    path(
        "campaigns/<int:pk>/recipients/import/",
        views.CampaignRecipientsImportApi.as_view(),
        name="api-campaign-recipients-import",
    ),
    path("campaigns/<int:pk>/start/", views.CampaignStartApi.as_view(), name="api-campaign-start"),
    path("campaigns/<int:pk>/pause/", views.CampaignPauseApi.as_view(), name="api-campaign-pause"),
    path("campaigns/<int:pk>/resume/", views.CampaignResumeApi.as_view(), name="api-campaign-resume"),
    path("campaigns/<int:pk>/cancel/", views.CampaignCancelApi.as_view(), name="api-campaign-cancel"),
    path("campaigns/<int:pk>/progress/", views.CampaignProgressApi.as_view(), name="api-campaign-progress"),
]
