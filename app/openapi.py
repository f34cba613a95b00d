"""The checked-in OpenAPI document, rendered deterministically."""

from __future__ import annotations

import json

from app.main import create_app
from app.settings import Settings


def render_openapi() -> str:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", json_logs=False))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
