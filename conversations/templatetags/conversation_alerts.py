from django import template
from django.urls import reverse

from conversations.selectors import delivery_problem_counts

register = template.Library()


@register.inclusion_tag("admin/conversations/delivery_alert.html", takes_context=True)
def delivery_alert(context) -> dict:
    """Warns on the admin index about failed webhook events and outbound messages of unknown fate."""
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {}
    counts = delivery_problem_counts(user=request.user)
    return {
        **counts,
        "events_url": reverse("admin:conversations_webhookevent_changelist") + "?status__exact=failed",
        "messages_url": reverse("admin:conversations_message_changelist") + "?status__exact=unknown",
    }
