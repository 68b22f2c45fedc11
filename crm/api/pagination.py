"""Lists come a page at a time: `?page=2&page_size=100` (50 by default, 200 at most), with the total count and
links to the next and previous pages."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class ApiPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
