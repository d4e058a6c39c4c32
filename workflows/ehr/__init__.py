"""Syncing with EHRs: link patients, write careloop's resources in once, read care plans out."""
