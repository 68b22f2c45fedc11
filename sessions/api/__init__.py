"""The REST API's endpoints of the sessions app (docs/api.md)."""
