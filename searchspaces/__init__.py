"""Declarative search spaces for nasmed (YAML files + a typed loader)."""

from __future__ import annotations

from searchspaces.errors import SpaceError

__all__ = ["SpaceError"]
