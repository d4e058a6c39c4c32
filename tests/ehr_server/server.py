"""``TestEHR``: the FHIR server and SMART authorization server on a loopback port."""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
from types import TracebackType
from typing import Any

import uvicorn

from .app import build_app
from .authorization import ID_TOKEN_FAULTS, AuthServer, LaunchContext
from .fault_middleware import FaultMiddleware, RequestLog
from .faults import Fault, FaultPlan
from .rest import FhirService
from .store import Resource, Store
from .validation import require_supported

DEFAULT_USER = "Practitioner/test-clinician"


class _Server(uvicorn.Server):
    """uvicorn's server, woken at once by :meth:`stop` instead of polling every 0.1 s."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Ask the server to exit; thread-safe."""
        self.should_exit = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop closed meanwhile
                pass


class TestEHR:
    """A strict FHIR R4 + SMART EHR served on ``127.0.0.1`` from a background thread.

    Use as a context manager; the port is chosen by the OS.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, token_lifetime: int = 300) -> None:
        self.token_lifetime = token_lifetime
        self._store = Store()
        self._faults = FaultPlan()
        self._log = RequestLog()
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._middleware: FaultMiddleware | None = None
        self._auth: AuthServer | None = None
        self._standalone_user = DEFAULT_USER

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> TestEHR:
        """Bind a free port and start serving (connections queue until uvicorn accepts)."""
        if self._socket is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._socket = sock
        origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._auth = AuthServer(f"{origin}/fhir", f"{origin}/auth/token", self.token_lifetime)
        service = FhirService(self._store, f"{origin}/fhir")
        app = build_app(service, self._auth, f"{origin}/auth")
        self._middleware = FaultMiddleware(app, self._faults, self._log)
        config = uvicorn.Config(
            self._middleware,
            http="h11",
            loop="asyncio",
            ws="none",
            lifespan="off",
            log_config=None,  # leave logging alone: uvicorn's records propagate to pytest
            log_level=None,
            timeout_graceful_shutdown=3,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="test-ehr", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: release hanging requests, shut uvicorn down, close the socket."""
        if self._middleware is not None:
            self._middleware.release_hangs()
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> TestEHR:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- addresses -----------------------------------------------------------------------

    @property
    def auth(self) -> AuthServer:
        """The authorization server (after :meth:`start`)."""
        if self._auth is None:
            raise RuntimeError("TestEHR is not started")
        return self._auth

    @property
    def base_url(self) -> str:
        """The FHIR base URL, e.g. ``http://127.0.0.1:PORT/fhir``."""
        return self.auth.base_url

    @property
    def token_url(self) -> str:
        """The token endpoint: the exact ``aud`` client assertions must carry."""
        return self.auth.token_url

    @property
    def authorize_url(self) -> str:
        """The authorization endpoint."""
        return self.token_url.removesuffix("/token") + "/authorize"

    @property
    def jwks_url(self) -> str:
        """The EHR's own JWKS (it signs id_tokens with it)."""
        return self.token_url.removesuffix("/token") + "/jwks"

    # -- registrations -------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        scopes: str,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
    ) -> None:
        """Register a Backend Services client allowed ``scopes``; keys by URL or inline."""
        self.auth.register_client(client_id, scopes, jwks_url, jwks)

    def register_app(
        self,
        client_id: str,
        redirect_uris: list[str],
        scopes: str,
        client_secret: str | None = None,
    ) -> None:
        """Register an App Launch client (confidential with ``client_secret``, else public)."""
        self.auth.register_app(client_id, redirect_uris, scopes, client_secret)

    def create_launch(
        self,
        patient_id: str | None,
        encounter_id: str | None = None,
        user: str | None = None,
        app_context: str | None = None,
    ) -> str:
        """A ``launch`` value for an EHR launch in the context of a patient (and encounter).

        ``app_context`` (as a CDS card's SMART link gives it) comes back as the token
        response's ``appContext``; ``patient_id`` None launches without a patient.
        """
        return self.auth.create_launch(
            LaunchContext(patient_id, encounter_id, user or DEFAULT_USER, app_context)
        )

    def set_standalone_patient(self, patient_id: str, user: str | None = None) -> None:
        """The patient a standalone launch with ``launch/patient`` selects."""
        self.auth.standalone = LaunchContext(patient_id, None, user or DEFAULT_USER)

    def spoil_id_tokens(self, fault: str | None) -> None:
        """Issue id_tokens wrong in one way (one of ``ID_TOKEN_FAULTS``; None: valid again)."""
        if fault is not None and fault not in ID_TOKEN_FAULTS:
            raise ValueError(f"unknown id_token fault {fault!r}")
        self.auth.id_token_fault = fault

    def revoke_tokens(self) -> None:
        """Invalidate every access token issued so far (later requests get 401)."""
        self.auth.revoke_all()

    @property
    def issued_tokens(self) -> int:
        """How many access tokens were issued."""
        return self.auth.issued

    # -- data ----------------------------------------------------------------------------

    def seed(self, resource: Resource) -> Resource:
        """Store ``resource`` as-is, unvalidated (id and meta assigned if absent); returns it."""
        rtype = resource["resourceType"]
        require_supported(rtype)
        with self._store.transaction() as txn:
            rid = resource.get("id") or txn.new_id()
            stored = txn.write(rtype, rid, resource, keep_meta=True)
        return copy.deepcopy(stored)

    def resources(self, resource_type: str) -> list[Resource]:
        """Current versions of every stored resource of a type."""
        return self._store.current(resource_type)

    def history(self, resource_type: str, id: str) -> list[Resource]:
        """Every version of one resource, oldest first."""
        return self._store.versions(resource_type, id)

    # -- faults and observations ---------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        count: int = 1,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``count`` requests matching method and path prefix."""
        self._faults.add(fault, count, method, path_prefix)

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self._faults.clear()

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` per request served; status 0 for no response."""
        return self._log.snapshot()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[tuple[str, str, int]]:
        """Block until ``count`` requests in all have arrived (a HANG or DROP counts on arrival)."""
        return self._log.wait_for(count, timeout)
