"""The REST API's shared parts (docs/api.md): token authentication, scopes, errors, pagination, rate limits.

Each app keeps its own endpoints in `<app>/api/` (one class per operation, input and output serializers); they
all ask `api_access(request)` what the caller may see and do, with the same rules as the CRM views."""
