"""Deployments of every flow, read from prefect.yaml so that file stays the single source of truth."""
