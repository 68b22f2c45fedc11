from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    """Campaigns, recipients, import, dispatch, opt-outs and progress (docs/campaigns.md)."""

    name = "campaigns"
    verbose_name = "Campaigns"
