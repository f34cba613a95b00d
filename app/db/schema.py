"""Imports every table module so the shared metadata is complete (alembic, tests)."""

from app.auth import tables as auth_tables  # noqa: F401
from app.db import tables  # noqa: F401
from app.db.base import metadata
from app.fhir.search import tables as search_tables  # noqa: F401

__all__ = ["metadata"]
