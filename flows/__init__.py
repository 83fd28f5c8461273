"""Prefect orchestration of the fashionnet library."""
