"""The REST API's endpoints of the queues app (docs/api.md)."""
