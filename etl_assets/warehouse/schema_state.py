"""What the warehouse remembers of a source's schema, as the reconciler reads and updates it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SchemaState:
    """What the warehouse remembers of a source's schema (table etl_schemas)."""

    columns: dict[str, str] | None = None
    accepted: dict[str, str] = field(default_factory=dict)  # observed -> expected renames already applied
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # expected column -> value profile
