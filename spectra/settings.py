"""Settings: one pydantic-settings model, read from the environment once per process by a cached factory.

The template (``template.yaml``) sets these variables on every function through ``Globals``; the local stack sets the
same ones from the same template. Names are the upper-case field names (``JOBS_TABLE``, ``RESULTS_BUCKET`` ...).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # Resources, from the template.
    jobs_table: str
    tenants_table: str
    jobs_queue_url: str = ""
    results_bucket: str = ""
    event_bus_name: str = "default"

    # The warehouse: exactly one of cluster (provisioned, DbUser identities) or workgroup (Serverless, SecretArn).
    redshift_cluster_id: str | None = None
    redshift_workgroup: str | None = None
    redshift_database: str = "dev"

    # Limits. The Data API refuses statements over 100 KB; we refuse them earlier with a clearer error.
    max_sql_bytes: int = Field(default=100_000, gt=0)
    # A job is one DynamoDB item (400 KB at most): SQL and parameters together must stay well inside it.
    max_parameter_bytes: int = Field(default=64 * 1024, gt=0)
    # Results at or under both limits are returned inline by GET /v1/jobs/{id}/results.
    inline_max_rows: int = Field(default=1_000, ge=0)
    inline_max_bytes: int = Field(default=256 * 1024, ge=0)
    # Large results: rows per part file, and how long a presigned URL lives.
    result_part_max_rows: int = Field(default=1_000_000, gt=0)
    presign_ttl_seconds: int = Field(default=900, gt=0, le=7 * 24 * 3600)

    api_page_max: int = Field(default=100, gt=0)

    # The reconciler (the backstop for lost Data API completion events, see spectra/reconciliation.py).
    # A pending job nobody has looked at for this long gets a look: its statement is described, or its age checked.
    # The jobs queue's maxReceiveCount (template.yaml): on that delivery the executor fails a job it still cannot
    # start instead of letting its message fall into the DLQ.
    executor_max_attempts: int = Field(default=5, gt=0)
    reconcile_after_seconds: int = Field(default=60, gt=0)
    # A job still QUEUED, or SUBMITTED without a statement, this long after it entered that state has lost its
    # message: queue it again. Longer than the jobs queue's visibility timeout (180 s), so SQS's own retry of a
    # throttled message comes first and the reconciler only adds a message when the original is really gone.
    requeue_after_seconds: int = Field(default=300, gt=0)
    # A job that has not reached the warehouse this long after it was created fails instead of being queued again:
    # whatever keeps losing its message (a poison job, a DLQ nobody drains) would otherwise loop forever.
    pending_max_age_seconds: int = Field(default=3600, gt=0)
    # Jobs looked at per run; the rest wait for the next run (logged), so a backlog cannot outlast the timeout.
    reconcile_batch_max: int = Field(default=200, gt=0)

    # Each tenant's share (spectra/share.py). Statements one tenant may run at once (a tenant record may set its own);
    # jobs over it wait QUEUED on the tenant's waiting list. When that list is full, a job's message comes back after
    # about this many seconds instead (jittered ±50%).
    tenant_max_running_statements: int = Field(default=5, ge=0)
    tenant_wait_seconds: int = Field(default=5, gt=1, le=900)
    # A running slot not verified for this long is checked against the job store when its tenant is at the cap.
    slot_lease_seconds: int = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _one_warehouse(self) -> Settings:
        if bool(self.redshift_cluster_id) == bool(self.redshift_workgroup):
            raise ValueError("set exactly one of REDSHIFT_CLUSTER_ID or REDSHIFT_WORKGROUP")
        return self

    @model_validator(mode="after")
    def _requeue_before_giving_up(self) -> Settings:
        if self.requeue_after_seconds >= self.pending_max_age_seconds:
            raise ValueError("REQUEUE_AFTER_SECONDS must be shorter than PENDING_MAX_AGE_SECONDS")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; built on first use, never at import time."""
    return Settings()
