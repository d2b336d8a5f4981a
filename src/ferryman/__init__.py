"""Ferryman runs Airbyte-protocol connectors as jobs."""

__version__ = "0.1.0"
