"""Alerts: lifecycle, notifications, escalation and the inbox API."""
