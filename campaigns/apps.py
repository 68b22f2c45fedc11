from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    """Campaigns, recipients, dispatch and throttling (docs/campaigns.md). Models arrive with the campaigns issue."""

    name = "campaigns"
    verbose_name = "Campaigns"
