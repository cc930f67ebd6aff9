"""Emulator settings: one dataclass for code, one pydantic-settings model for the environment.

``EmulatorConfig`` is what Python callers (fixtures, benchmarks, the local runner) pass. ``EmulatorSettings`` reads the
same knobs from ``SPECTRA_EMULATOR_*`` variables for the command line entry point; the CLI flags override both.
The limits default to the documented Data API quotas so code that works here does not break on AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024 * KIB


@dataclass
class EmulatorConfig:
    port: int = 0  # 0 = any free port; always binds 127.0.0.1
    database_url: str | None = None  # an existing PostgreSQL; None = embedded pgserver
    data_dir: str | None = None  # the embedded server's data folder; None = a temp dir removed on stop
    aws_endpoint_url: str | None = None  # EventBridge / S3 / Secrets Manager (moto); None = boto3 defaults (env)
    region: str = "us-east-1"
    account_id: str = "123456789012"  # moto's default account: event ARNs and principals use it
    admin_user: str = "awsuser"
    default_database: str = "dev"
    event_drop_rate: float = 0.0  # fraction of completion events silently dropped
    result_ttl_seconds: int = 86400  # AWS keeps results (and statement metadata) for 24 hours
    max_workers: int = 8
    # Documented Data API quotas (Amazon Redshift Management Guide, "Considerations when calling the Data API").
    max_statement_bytes: int = 100 * KIB  # "Cannot process query string larger than 100kB"
    max_batch_statements: int = 40
    max_active_statements: int = 500  # SUBMITTED/PICKED/STARTED statements at once
    max_active_sessions: int = 500
    max_result_bytes: int = 500 * MIB  # "Database response exceeded size limit"
    max_row_bytes: int = 64 * KIB  # "Packet for query is too large"
    max_session_keep_alive_seconds: int = 86400
    # Requests per second per operation (quotas.py): empty = not metered; quotas.DATA_API_RATE_QUOTAS = AWS's.
    rate_limits: dict[str, float] = field(default_factory=dict)
    # Result paging: AWS pages by size; one page here holds at most this many serialized bytes / rows.
    page_max_bytes: int = 1 * MIB
    page_max_rows: int = 100_000
    fetch_batch_rows: int = 5000  # rows fetched from PostgreSQL per round trip while spooling a result


class EmulatorSettings(BaseSettings):
    """The environment's view of ``EmulatorConfig`` (prefix ``SPECTRA_EMULATOR_``, e.g. ``SPECTRA_EMULATOR_PORT``)."""

    model_config = SettingsConfigDict(env_prefix="SPECTRA_EMULATOR_", extra="ignore")

    port: int = 0
    database_url: str | None = None
    data_dir: str | None = None
    aws_endpoint_url: str | None = None
    region: str = "us-east-1"
    admin_user: str = "awsuser"
    event_drop_rate: float = 0.0
    result_ttl_seconds: int = 86400
    max_workers: int = 8

    def to_config(self, **overrides: object) -> EmulatorConfig:
        known = {f.name for f in fields(EmulatorConfig)}
        values = {k: v for k, v in self.model_dump().items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return EmulatorConfig(**values)
