"""Clinicians: careloop users linked to a Practitioner, and their signed-in browser sessions."""
