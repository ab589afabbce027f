"""Metrics, logs and the hooks that feed them (HTTP, Celery, the job table)."""
