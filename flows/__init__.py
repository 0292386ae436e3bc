"""Prefect flows, one module per use case; they only compose tasks."""
