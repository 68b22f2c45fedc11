from django import template
from django.urls import reverse

from sessions.selectors import number_list_active_without_queue, number_list_needing_attention

register = template.Library()


@register.inclusion_tag("admin/wa_sessions/numbers_without_queue_alert.html", takes_context=True)
def numbers_without_queue_alert(context) -> dict:
    """Warns on the admin index while any active number the user can see has no queue."""
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {"numbers": []}
    numbers = list(number_list_active_without_queue(user=request.user)[:6])
    url = reverse("admin:wa_sessions_whatsappnumber_changelist") + "?has_queue=no&status=active"
    return {"numbers": numbers[:5], "more": len(numbers) > 5, "url": url}


@register.inclusion_tag("admin/wa_sessions/numbers_attention_alert.html", takes_context=True)
def numbers_attention_alert(context) -> dict:
    """Warns on the admin index while any number the user can see cannot send until staff act."""
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {"numbers": []}
    numbers = list(number_list_needing_attention(user=request.user)[:6])
    url = reverse("admin:wa_sessions_whatsappnumber_changelist") + "?attention=yes"
    return {"numbers": numbers[:5], "more": len(numbers) > 5, "url": url}
