"""SMART on FHIR clients for EHRs: Backend Services tokens and a careful FHIR client."""
