"""Celery workers: index instances (and, later, build FHIR resources and forward studies)."""
