"""HTTP views of the crm app: the agent-facing CRM (inbox, conversation, dashboard) and the health check."""

from crm.views.health import healthz

__all__ = ["healthz"]
