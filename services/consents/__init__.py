"""Consent the patient gives and takes back: the app API, the FHIR mapping, the tenant policy.

Enforced at the egress gate (integrations/egress/consent.py decides, services/audit/egress_guard.py
reads the Consents at send time).
"""
