"""A strict, fault-injecting test EHR: FHIR R4 REST server + SMART authorization server.

    with TestEHR(token_lifetime=300) as ehr:
        ehr.register_client("careloop", "system/*.cruds", jwks_url=...)
        ehr.inject(Fault.DROP_AFTER_COMMIT, method="POST", path_prefix="/fhir")
        ...  # point the client at ehr.base_url; assert on ehr.resources("Observation")

``ehr_server.helpers`` has client-side helpers (keys, assertions, PKCE, a JWKS server).
"""

from .faults import Fault, FaultKind
from .server import TestEHR

__all__ = ["Fault", "FaultKind", "TestEHR"]
