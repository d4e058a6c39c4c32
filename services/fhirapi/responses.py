"""FHIR responses: resources with ETag and Last-Modified, searchset Bundles."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.responses import Response

from careloop.services.common.errors import FHIR_JSON
from careloop.services.store.repository import StoredResource
from careloop.services.store.search import SearchPage


def resource_response(
    stored: StoredResource, status: int = 200, location_base: str | None = None
) -> Response:
    """One resource version as stored, with its ETag and Last-Modified."""
    headers = {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
    }
    if location_base is not None:
        headers["Location"] = (
            f"{location_base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        )
    return Response(stored.content, status, headers=headers, media_type=FHIR_JSON)


def fhir_json_response(body: dict[str, Any], status: int = 200) -> Response:
    """Any FHIR JSON body."""
    return Response(orjson.dumps(body), status, media_type=FHIR_JSON)


def searchset(
    fhir_base: str,
    rtype: str,
    params: list[tuple[str, str]],
    page: SearchPage,
) -> dict[str, Any]:
    """A searchset Bundle for one page, with ``self`` and (if more) ``next`` links."""
    kept = list(params)
    self_url = f"{fhir_base}/{rtype}" + (f"?{urlencode(kept)}" if kept else "")
    links = [{"relation": "self", "url": self_url}]
    if page.next_token:
        links.append(
            {
                "relation": "next",
                "url": f"{fhir_base}/{rtype}?{urlencode([*kept, ('_page', page.next_token)])}",
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:  # Bundle.total is optional: omitted when too costly to count
        bundle["total"] = page.total
    return {
        **bundle,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{fhir_base}/{r.resource_type}/{r.id}",
                "resource": orjson.loads(r.content),
                "search": {"mode": "match"},
            }
            for r in page.resources
        ],
    }
