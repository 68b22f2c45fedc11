"""The REST API's endpoints of the conversations app (docs/api.md)."""
