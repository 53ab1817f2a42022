"""Celery app and tasks: retrain, score, pre-annotate."""
