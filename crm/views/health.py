from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from crm.health import health_report


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when database, Redis, a worker per expected queue and beat are all healthy; else 503 naming them."""
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
