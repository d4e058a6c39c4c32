"""Notification channels and EHR clients."""
