"""CDS Hooks 2.0: careloop's cards in the EHR, for callers it trusts."""
