"""Prefect tasks as thin wrappers over plain, testable functions."""
