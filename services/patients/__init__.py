"""Patients: the FHIR Patient behind each app identifier."""
