"""Celery app, tasks and threshold rules."""
