"""Settings: one pydantic-settings model, read from the environment once per process by a cached factory.

The template (``template.yaml``) sets these variables on every function through ``Globals``; the local stack sets the
same ones from the same template. Names are the upper-case field names (``JOBS_TABLE``, ``RESULTS_BUCKET`` ...).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlparse

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _whole(value: object) -> object:
    """A fraction, as the whole number above it. CloudFormation's Number parameters take 2.5 and hand it to the
    functions as written: refused here, TenantMaxRunningStatements or SessionKeepAliveSeconds at 2.5 (Globals) would
    make every function fail to load its settings, and so every request fail. The ceiling of a value within a
    parameter's MinValue and MaxValue (whole numbers) stays within them, and never makes a fraction 0, which means
    "none" to several settings (0.5 running statements floored to 0 would pause every tenant)."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value  # not a number: left for the int field to refuse
        if math.isfinite(number):
            return math.ceil(number)
    return value


#: A whole-number setting a template Number parameter sets (template.yaml): a fraction is read as its ceiling.
TemplateInt = Annotated[int, BeforeValidator(_whole)]

#: The most attempts a webhook delivery may be given (template.yaml's WebhookMaxAttempts MaxValue), and the longest wait
#: between two (the retry cap, which the template leaves at this): together they bound how long a delivery can still
#: need its subscription (spectra.notify.store.KEPT_AFTER_TENANT_DELETED).
WEBHOOK_MAX_ATTEMPTS_MOST = 50
WEBHOOK_RETRY_MAX_DELAY_SECONDS = 3 * 3600


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
    # Results at or under both limits (rows, and bytes of uncompressed JSON) are returned inline by GET
    # /v1/jobs/{id}/results when delivery is auto or inline. Inline rows live on the job record, so they also get no
    # more than the room left in its DynamoDB item (400 KB) beside the SQL and parameters (spectra/delivery.py).
    inline_max_rows: int = Field(default=1_000, ge=0)
    inline_max_bytes: int = Field(default=256 * 1024, ge=0)
    # Days results are served (template parameter ResultRetentionDays; the results bucket deletes files after as
    # many days, inline rows are refused after them too): past it, GET /v1/jobs/{id}/results answers 410. At most 13:
    # a job's record lives 30 days (job_store.JOB_TTL), and a bulk job may stay Open this long before its result
    # files are written to be kept as long again, so no answer is promised past the record that gives it.
    result_retention_days: TemplateInt = Field(default=7, gt=0, le=13)
    # Completions that may fail to collect a result before the job fails (result_unconvertible, result_failed)
    # instead of being retried by its queue or the reconciler.
    result_max_attempts: int = Field(default=3, gt=0)
    # Large results: rows per part file, and how long a presigned URL (SigV4, GET of one object) lives. Short: a URL
    # handed out stays valid to its end whatever happens to the key or the tenant that asked for it.
    result_part_max_rows: int = Field(default=1_000_000, gt=0)
    presign_ttl_seconds: int = Field(default=300, gt=0, le=3600)

    api_page_max: int = Field(default=100, gt=0)
    # The API's own body limit (API Gateway's is 10 MB, Lambda's 6 MB): the largest legal request (100 KB of SQL,
    # 64 KB of parameters) stays far below it even with every character escaped, so anything over it is refused
    # with 413 before it is decoded.
    api_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # The Secrets Manager secret whose value signs page tokens (spectra/tokens.py); only the API function needs it.
    page_token_secret_arn: str = ""

    # Bulk loads and exports (spectra/bulk). Empty table/bucket names: the function has no bulk role.
    bulk_jobs_table: str = ""
    ingest_bucket: str = ""
    bulk_results_queue_url: str = ""
    # What COPY and UNLOAD authorise S3 with: the cluster's default IAM role, or a role ARN attached to it.
    bulk_iam_role: str = "default"
    # COPY's MAXERROR: rows that may be rejected (and listed in failedResults) before the whole load fails.
    # Redshift's own ceiling is 100,000.
    bulk_max_errors: int = Field(default=100_000, ge=0, le=100_000)
    # The column of shared tables that says whose a row is: a bulk file may not name it (nor any column defaulting to
    # the loading user); the warehouse fills it (give it DEFAULT current_user). Redshift applies no row-level
    # security to INSERT or COPY, so a file that set it could load rows into another tenant's view. Empty: none.
    bulk_owner_column: str = "owner"
    # Ingest jobs with at most this many source bytes get their result files written before they end; larger ones
    # end when their load commits and their result files follow (GET answers 409 job_not_finished meanwhile).
    bulk_inline_results_max_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    # CSV bodies of PUT /v1/bulk/jobs/{id}/batches; larger files go through a presigned upload URL. Not API
    # Gateway's 10 MB: the body reaches the function base64-encoded (the API's binary media types are */*) inside
    # an event Lambda takes up to 6 MiB of, so 4 MiB (5.3 MiB encoded) is about the most that can arrive at all.
    bulk_max_batch_bytes: int = Field(default=4 * 1024 * 1024, gt=0, le=4 * 1024 * 1024)
    bulk_max_files: int = Field(default=100, gt=0)
    # Query job result pages: records per page (maxRecords' default and ceiling) and a byte budget no page of more
    # than one record passes. The page goes out base64-encoded (a CSV body is binary to API Gateway) within Lambda's
    # 6 MB response quota, so 4 MiB (5.3 MiB encoded) is about the most a page can be.
    bulk_page_max_records: int = Field(default=50_000, gt=0)
    bulk_page_max_bytes: int = Field(default=4 * 1024 * 1024, gt=0, le=4 * 1024 * 1024)
    # Result files up to this size are answered inline; larger ones by a redirect to a presigned URL.
    bulk_inline_download_max_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # At most an hour, as PRESIGN_TTL_SECONDS: the functions sign with their role's temporary credentials, and "the URL
    # expires when the credential expires, even if the URL was created with a later expiration time" (S3's guide to
    # presigned URLs), so a longer life would be promised and not kept.
    upload_url_ttl_seconds: int = Field(default=900, gt=0, le=3600)

    # The reconciler (the backstop for lost Data API completion events, see spectra/reconciliation.py).
    # A pending job nobody has looked at for this long gets a look: its statement is described, or its age checked.
    # The jobs queue's maxReceiveCount (template.yaml): on that delivery the executor fails a job it still cannot
    # start instead of letting its message fall into the DLQ.
    executor_max_attempts: int = Field(default=5, gt=0)
    reconcile_after_seconds: int = Field(default=60, gt=0)
    # A job still QUEUED, or SUBMITTED without a statement, this long after it entered that state has lost its
    # message: queue it again. Longer than the jobs queue's visibility timeout (180 s), and counted from each
    # throttled attempt (the executor moves the job back), so SQS's own retries of a throttled message come first and
    # the reconciler only adds a message when the original is really gone.
    requeue_after_seconds: int = Field(default=300, gt=0)
    # A job that has not reached the warehouse this long after it was created fails instead of being queued again:
    # whatever keeps losing its message (a poison job, a DLQ nobody drains) would otherwise loop forever.
    pending_max_age_seconds: int = Field(default=3600, gt=0)
    # Jobs looked at per run; the rest wait for the next run (logged), so a backlog cannot outlast the timeout.
    reconcile_batch_max: int = Field(default=200, gt=0)

    # Each tenant's share (spectra/share.py). Statements one tenant may run at once (a tenant record may set its own);
    # jobs over it wait QUEUED on the tenant's waiting list. When the list refuses a job for a reason other than its
    # size (a failed write), its message comes back after about this many seconds (jittered ±50%); a full list sends
    # it back after 2.5 to 5 minutes (spectra/share.py).
    tenant_max_running_statements: TemplateInt = Field(default=5, ge=0)
    # One-call queries (wait_timeout) one tenant may have waiting at once (a tenant record may set its own): each
    # holds an API environment while it waits (spectra/waits.py).
    tenant_max_waits: TemplateInt = Field(default=20, ge=1)
    tenant_wait_seconds: TemplateInt = Field(default=5, gt=1, le=900)
    # A running slot not verified for this long is checked against the job store when its tenant is at the cap.
    slot_lease_seconds: int = Field(default=60, gt=0)

    # Data API sessions (spectra/sessions.py): a tenant's statements run in kept-alive sessions, kept this long after
    # each statement ends (template parameter SessionKeepAliveSeconds; 0 runs every statement on a fresh connection).
    session_keep_alive_seconds: TemplateInt = Field(default=300, ge=0, le=86400)
    # How long an executor environment trusts a tenant record it read (identity, generation, active flag, cap): a
    # deactivated tenant's jobs stop starting within this time. Refusals are always read afresh.
    tenant_cache_seconds: float = Field(default=5, ge=0, le=60)

    # Tenant identities (template parameters TenantDbUserPrefix, TenantSecretPrefix): the executor starts a statement
    # only as a database user, or with a secret whose name, under these prefixes (spectra/identity.py).
    tenant_db_user_prefix: str = Field(default="tenant_", min_length=1)
    tenant_secret_prefix: str = Field(default="spectra/tenants/", min_length=1)

    # JWT bearer tokens beside API keys (spectra/auth.py), off while JWKS_URL is empty. The tenant is named by the
    # claim JWT_TENANT_CLAIM; iss and aud must equal JWT_ISSUER and JWT_AUDIENCE; exp, nbf and iat get the leeway.
    jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_tenant_claim: str = Field(default="tenant_id", min_length=1)
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # How long a function keeps the fetched key set: a key removed from the JWKS stops working within this time.
    jwks_cache_seconds: int = Field(default=60, gt=0, le=3600)

    # Notifications (spectra/notify). Empty names: the function has no notification role.
    subscriptions_table: str = ""
    webhook_delivery_queue_url: str = ""
    # deliveries that used every attempt are kept here (the delivery queue's own DLQ)
    webhook_dead_letter_queue_url: str = ""
    # the SNS topic of terminal job events
    notify_topic_arn: str = ""
    # Loopback webhook URLs, over plain http too: the local stack's setting (template parameter WebhookAllowLoopback),
    # never on AWS, where webhooks are https:// URLs of public addresses (spectra/notify/urls.py).
    webhook_allow_loopback: bool = False
    # One attempt, connect to the end of the response headers.
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=60)
    # Retries: attempt n waits base * factor^(n-1) seconds (at most the cap), of which a random half (jitter);
    # by default 2.5-5 s, 7.5-15 s, 22-45 s, ... 1.5-3 h: 10 attempts spread over 3.8 to 7.5 hours.
    webhook_max_attempts: TemplateInt = Field(default=10, ge=1, le=WEBHOOK_MAX_ATTEMPTS_MOST)
    webhook_retry_base_seconds: float = Field(default=5, gt=0)
    webhook_retry_factor: float = Field(default=3, ge=1)
    webhook_retry_max_delay_seconds: int = Field(default=WEBHOOK_RETRY_MAX_DELAY_SECONDS, gt=0)
    # A subscription whose deliveries failed this many times in a row, for at least this long, is disabled (a 410
    # disables it at once). Both: a receiver down for minutes while a burst of jobs ends fails many attempts at
    # once, and its retries (spread over hours) are what it needs, not to be switched off for good.
    webhook_disable_after_failures: TemplateInt = Field(default=15, ge=1)
    webhook_disable_after_seconds: TemplateInt = Field(default=24 * 3600, ge=0)
    # Standing subscriptions per tenant: every event of the tenant reads them all.
    webhook_max_subscriptions: int = Field(default=25, ge=1)
    # A query's callback is kept at least this long, and longer when its job's longest possible life and its
    # retries at these settings need it (spectra.notify.service.callback_life).
    callback_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)

    @model_validator(mode="after")
    def _jwt_complete(self) -> Settings:
        if not self.jwks_url:
            return self
        if not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("JWKS_URL needs JWT_ISSUER and JWT_AUDIENCE: tokens are checked against both")
        url = urlparse(self.jwks_url)
        # Keys fetched over plain HTTP could be swapped on the way; only the machine itself is trusted without TLS.
        if url.scheme != "https" and not (url.scheme == "http" and url.hostname in {"127.0.0.1", "localhost", "::1"}):
            raise ValueError("JWKS_URL must be an https:// URL")
        return self

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
