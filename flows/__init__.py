"""Prefect flows: wiring only. Importing this package points Prefect at the data home (environment only)."""

from tasks.settings import apply_environment

apply_environment()
