"""fhirapi domain."""
