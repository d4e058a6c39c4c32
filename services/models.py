"""Every table, imported in one place so Alembic sees the whole schema."""

from sqlmodel import SQLModel

from careloop.services.alerts.models import (
    Alert,
    AlertEvent,
    DeliveryAttempt,
    Notification,
    NotificationRoute,
    ProcessedReading,
)
from careloop.services.audit.models import AuditRecord
from careloop.services.bulk.models import ExportFile, ExportJob
from careloop.services.cds.models import CdsClient, CdsUsedJti
from careloop.services.clinicians.models import Clinician
from careloop.services.common.models import IdempotencyRecord
from careloop.services.ehr.models import (
    EhrConnection,
    EhrCursor,
    EhrFailure,
    EhrImport,
    EhrWrite,
    PatientLink,
)
from careloop.services.keys.models import SigningKey
from careloop.services.launch.models import ClinicianSession, LaunchState
from careloop.services.outbox.models import DeadTask, OutboxMessage
from careloop.services.patients.models import PatientIdentifier
from careloop.services.reports.models import SymptomReport
from careloop.services.store.models import FhirResource, FhirResourceHistory, SearchToken
from careloop.services.telehealth.models import TelehealthSessionRow
from careloop.services.tenancy.models import AppClient, Tenant, UsedAssertion

metadata = SQLModel.metadata

__all__ = [
    "CdsClient",
    "CdsUsedJti",
    "Clinician",
    "ClinicianSession",
    "LaunchState",
    "EhrConnection",
    "ExportFile",
    "ExportJob",
    "EhrCursor",
    "EhrFailure",
    "EhrImport",
    "EhrWrite",
    "PatientLink",
    "Alert",
    "AlertEvent",
    "AuditRecord",
    "DeadTask",
    "DeliveryAttempt",
    "Notification",
    "NotificationRoute",
    "OutboxMessage",
    "ProcessedReading",
    "AppClient",
    "FhirResource",
    "FhirResourceHistory",
    "IdempotencyRecord",
    "PatientIdentifier",
    "SearchToken",
    "SigningKey",
    "SymptomReport",
    "TelehealthSessionRow",
    "Tenant",
    "UsedAssertion",
    "metadata",
]
