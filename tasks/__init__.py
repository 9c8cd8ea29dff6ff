"""Prefect tasks: one per audiolib call or storage step (the audit pipeline builds them)."""
