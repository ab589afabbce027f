"""WSGI entry point: ``gunicorn detector.wsgi:app``."""

from detector.app import create_app

app = create_app()
