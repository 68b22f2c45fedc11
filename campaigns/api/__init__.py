"""The REST API's endpoints of the campaigns app (docs/api.md)."""
