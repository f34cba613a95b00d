"""Settings from RELAIS_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAIS_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./relais.db"
    base_url: str = "http://127.0.0.1:8000"
    signing_key_file: Path | None = None
    export_dir: Path = Path("./exports")
    max_body_bytes: int = 10 * 1024 * 1024
    log_level: str = "INFO"
    json_logs: bool = True
    # Connections kept open; requests beyond it open and close extra ones (costly).
    db_pool_size: int = 40

    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def signing_key_path(self) -> Path:
        """Default: next to the SQLite file, else the working directory."""
        if self.signing_key_file is not None:
            return self.signing_key_file
        if self.is_sqlite and ":///" in self.database_url:
            db_path = self.database_url.split(":///", 1)[1]
            if db_path and db_path != ":memory:":
                return Path(db_path).resolve().parent / "relais-signing-key.pem"
        return Path("./relais-signing-key.pem").resolve()
