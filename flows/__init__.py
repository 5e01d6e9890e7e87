"""Prefect flows: wiring only. Importing this package points Prefect at the data home (environment only)."""

from tasks.core.settings import prepare_environment

prepare_environment()
