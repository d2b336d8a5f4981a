"""Connector references and how each kind becomes a command to run."""

from ferryman.connectors.references import (
    ConnectorRef,
    ResolvedConnector,
    parse_reference,
    pin_reference,
    resolve,
)

__all__ = ["ConnectorRef", "ResolvedConnector", "parse_reference", "pin_reference", "resolve"]
