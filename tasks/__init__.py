"""The lensflow library: plain, testable functions that never import Prefect.

Grouped by pipeline stage; a group imports only the groups listed before it (and `models`):
core → sources → stores → learning → registry → publishing → runs.
Each function is wrapped once as a Prefect task in flows/steps.py.
"""
