"""``/``: the inbox for a signed-in clinician, the sign-in page for anyone else."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import RedirectResponse, Response

from careloop.services.clinicians.sessions import NotSignedIn, login_url

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> Response:
    """The inbox (which asks for sign-in first when needed)."""
    return RedirectResponse("/inbox", status_code=303)


async def _sign_in_first(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotSignedIn)
    return RedirectResponse(login_url(exc.next_path), status_code=303)


def install_sign_in_redirect(app: FastAPI) -> None:
    """Pages that need a clinician send a browser without a session to ``/login?next=...``."""
    app.add_exception_handler(NotSignedIn, _sign_in_first)
