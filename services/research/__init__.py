"""The de-identified research export: who may be exported (consent), and the NDJSON files."""

from careloop.services.research.export import (
    DEFAULT_TYPES,
    EXPORTABLE_TYPES,
    ExportRequest,
    ExportResult,
    run_export,
)

__all__ = ["DEFAULT_TYPES", "EXPORTABLE_TYPES", "ExportRequest", "ExportResult", "run_export"]
