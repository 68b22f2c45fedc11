from django import template
from django.urls import reverse

from campaigns.models import Campaign
from crm.selectors import client_scope

register = template.Library()


@register.inclusion_tag("admin/campaigns/paused_alert.html", takes_context=True)
def paused_campaigns_alert(context) -> dict:
    """Warns on the admin index while a campaign the user can see is paused (a failure spike pauses by itself)."""
    request = context.get("request")
    if request is None or not request.user.is_authenticated or not request.user.has_perm("campaigns.view_campaign"):
        return {"campaigns": []}
    paused = client_scope(Campaign.objects.filter(status=Campaign.Status.PAUSED), request.user)
    campaigns = list(paused.select_related("number").order_by("-paused_at", "-pk")[:6])
    url = reverse("admin:campaigns_campaign_changelist") + "?status__exact=paused"
    return {"campaigns": campaigns[:5], "more": len(campaigns) > 5, "url": url}
