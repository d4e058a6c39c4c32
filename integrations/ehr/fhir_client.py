"""A FHIR client for one EHR: bearer tokens, one re-authentication on 401, errors classified."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from careloop.integrations.channels.retry_after import parse_retry_after
from careloop.integrations.egress import DestinationRefused, Disclosure, EgressClient

FHIR_JSON = "application/fhir+json"


class EhrError(Exception):
    """A request the EHR did not accept.

    ``transient``: worth retrying later (timeouts, dropped connections, 429, 5xx);
    otherwise the EHR rejected the content and ``reason`` holds its OperationOutcome text.
    """

    def __init__(
        self,
        message: str,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.reason = reason


def _outcome_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict) or data.get("resourceType") != "OperationOutcome":
        return str(data.get("error_description", "")) if isinstance(data, dict) else ""
    parts = []
    for issue in data.get("issue", []):
        where = ",".join(issue.get("expression", []))
        parts.append(f"{issue.get('code', '')}: {issue.get('diagnostics', '')} {where}".strip())
    return "; ".join(parts)[:2000]


@dataclass
class FhirClient:
    """One EHR's FHIR API through the egress client; ``get_token(True)`` renews the token."""

    base_url: str
    http: EgressClient
    get_token: Callable[[bool], str]

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        disclosure: Disclosure | None = None,
    ) -> dict[str, Any]:
        """Send one request; the JSON answer, or EhrError.

        ``disclosure`` names the patient whose data the request carries (a write, or a search
        by the patient's identifier): the egress client checks consent (EgressBlocked) and
        audits it. A destination the egress rules refuse is a non-transient EhrError.
        """
        url = self.base_url.rstrip("/") + "/" + path.lstrip("/") if path else self.base_url
        content = orjson.dumps(body) if body is not None else None
        for attempt in range(2):
            headers = {
                "Authorization": f"Bearer {self.get_token(attempt > 0)}",
                "Accept": FHIR_JSON,
            }
            if content is not None:
                headers["Content-Type"] = FHIR_JSON
            try:
                response = self.http.request(
                    method,
                    url,
                    content=content,
                    params=params,
                    headers=headers,
                    disclosure=disclosure,
                )
            except DestinationRefused as exc:
                raise EhrError(
                    f"destination refused: {exc.reason}", exc.transient, reason=exc.message
                ) from exc
            except httpx.TimeoutException as exc:
                raise EhrError("the EHR timed out", transient=True) from exc
            except httpx.TransportError as exc:
                raise EhrError(f"connection failed: {type(exc).__name__}", transient=True) from exc
            if response.status_code == 401 and attempt == 0:
                continue  # the token may have expired or been revoked: renew it once
            return self._result(response)
        raise AssertionError("unreachable")

    @staticmethod
    def _result(response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status < 300:
            try:
                data: dict[str, Any] = response.json() if response.content else {}
            except ValueError as exc:
                raise EhrError("the EHR answered non-JSON", transient=True, status=status) from exc
            return data
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status in (408, 429) or status >= 500:
            raise EhrError(
                f"the EHR answered {status}",
                transient=True,
                status=status,
                retry_after=retry_after,
            )
        raise EhrError(
            f"the EHR refused the request: {status}",
            transient=False,
            status=status,
            reason=_outcome_text(response),
        )
