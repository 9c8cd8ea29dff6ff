"""Prefect flows: list a collection, fan out, branch, write reports (the audit pipeline)."""
