"""Lists come a page at a time: `?page=2&page_size=100` (50 by default, 200 at most), with the total count and
links to the next and previous pages."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView


class ApiPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def paginated_response(
    request: Request,
    view: APIView,
    items: QuerySet | list,
    serializer_class: type[Serializer],
    rows: Callable[[list], list] | None = None,
) -> Response:
    """One page of `items` as `{"count", "next", "previous", "results"}`; `rows` turns the page's objects into
    what `serializer_class` reads (for data gathered per page: counts, availability), the objects themselves when
    not given."""
    paginator = ApiPagination()
    page = paginator.paginate_queryset(items, request, view=view)
    data = rows(list(page)) if rows is not None else page
    return paginator.get_paginated_response(serializer_class(data, many=True).data)
