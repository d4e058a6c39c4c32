"""FHIR Bulk Data ``$export``: jobs, their NDJSON files in the database, status and download.

The work itself (one file per worker run) is ``workflows.bulk_export``.
"""

from careloop.services.bulk.jobs import prune_exports
from careloop.services.bulk.models import ExportFile, ExportJob, ExportLevel, JobState

__all__ = ["ExportFile", "ExportJob", "ExportLevel", "JobState", "prune_exports"]
