"""Imports every table module so the shared metadata is complete (alembic, tests)."""

from app.db import tables  # noqa: F401
from app.db.base import metadata

__all__ = ["metadata"]
