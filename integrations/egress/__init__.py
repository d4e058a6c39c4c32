"""The one way data leaves careloop (the egress boundary).

- `destinations`: where careloop may connect (https in production, public addresses only,
  ``CARELOOP_EGRESS_ALLOW`` exemptions), checked at registration and at every connection.
- `client`: the only HTTP client; it pins each connection to a checked address and checks
  consent and audits every request that carries patient data.
- `smtp`: SMTP connections under the same rules.
- `gate`: consent and audit for non-HTTP transfers, and the interfaces (`Guard`) careloop
  hands in: the gate imports nothing of services/ or workflows/.
"""

from careloop.integrations.egress.client import EgressClient, EgressHttp, destination_label, shared
from careloop.integrations.egress.consent import (
    CARE_TEAM_ALERTS,
    DEFAULT_POLICY,
    EHR_SYNC,
    PURPOSES,
    RESEARCH_EXPORT,
    TENANT_POLICY,
    Decision,
    deciding_consent,
    denying_consent,
)
from careloop.integrations.egress.destinations import (
    AllowList,
    Destination,
    DestinationPolicy,
    DestinationRefused,
)
from careloop.integrations.egress.gate import (
    TREATMENT,
    Disclosure,
    EgressBlocked,
    EgressEvent,
    Guard,
    send,
)

__all__ = [
    "CARE_TEAM_ALERTS",
    "DEFAULT_POLICY",
    "EHR_SYNC",
    "PURPOSES",
    "RESEARCH_EXPORT",
    "TENANT_POLICY",
    "TREATMENT",
    "AllowList",
    "Destination",
    "DestinationPolicy",
    "Decision",
    "DestinationRefused",
    "Disclosure",
    "EgressBlocked",
    "EgressClient",
    "EgressEvent",
    "EgressHttp",
    "Guard",
    "deciding_consent",
    "denying_consent",
    "destination_label",
    "send",
    "shared",
]
