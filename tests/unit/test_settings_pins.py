"""Settings behaviour no test held before (found by mutation testing spectra/settings.py): the values a stack gets for
what its template leaves unset (as the README gives them), the ends of each setting's range, which a function either
loads with or refuses at once naming the setting, a template Number that is not a number refused rather than crashing
the load, the loopback JWKS URLs that may be plain HTTP, and the requeue-before-giving-up rule at its edge. (That a
function reads every variable the template sets on it is tests/unit/test_template.py's.)"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spectra.settings import Settings

pytestmark = pytest.mark.unit

BASE = {"JOBS_TABLE": "jobs", "TENANTS_TABLE": "tenants", "REDSHIFT_CLUSTER_ID": "c1"}


def _load(monkeypatch, **variables: str) -> Settings:
    """The settings a function loads from its environment holding these variables (and the required ones)."""
    for name, value in {**BASE, **variables}.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_a_stack_gets_the_readmes_values_for_what_its_template_leaves_unset(monkeypatch):
    """The README gives these as the defaults (limits, retention, timers, caps): a default changed in the code alone
    would change what every deployed stack does without the documentation or the operator knowing."""
    settings = _load(monkeypatch)
    expected = {
        "jobs_queue_url": "",
        "results_bucket": "",
        "event_bus_name": "default",
        "redshift_workgroup": None,
        "redshift_database": "dev",
        "max_sql_bytes": 100_000,
        "max_parameter_bytes": 65_536,
        "inline_max_rows": 1_000,
        "inline_max_bytes": 262_144,
        "result_retention_days": 7,
        "result_max_attempts": 3,
        "result_part_max_rows": 1_000_000,
        "presign_ttl_seconds": 300,
        "api_page_max": 100,
        "api_max_body_bytes": 1_048_576,
        "page_token_secret_arn": "",
        "bulk_jobs_table": "",
        "ingest_bucket": "",
        "bulk_results_queue_url": "",
        "bulk_iam_role": "default",
        "bulk_max_errors": 100_000,
        "bulk_owner_column": "owner",
        "bulk_inline_results_max_bytes": 16_777_216,
        "bulk_max_batch_bytes": 4_194_304,
        "bulk_max_files": 100,
        "bulk_page_max_records": 50_000,
        "bulk_page_max_bytes": 4_194_304,
        "bulk_inline_download_max_bytes": 4_194_304,
        "upload_url_ttl_seconds": 900,
        "executor_max_attempts": 5,
        "reconcile_after_seconds": 60,
        "requeue_after_seconds": 300,
        "pending_max_age_seconds": 3600,
        "reconcile_batch_max": 200,
        "tenant_max_running_statements": 5,
        "tenant_max_waits": 20,
        "tenant_wait_seconds": 5,
        "slot_lease_seconds": 60,
        "session_keep_alive_seconds": 300,
        "tenant_cache_seconds": 5,
        "tenant_db_user_prefix": "tenant_",
        "tenant_secret_prefix": "spectra/tenants/",
        "jwks_url": "",
        "jwt_issuer": "",
        "jwt_audience": "",
        "jwt_tenant_claim": "tenant_id",
        "jwt_leeway_seconds": 30,
        "jwks_cache_seconds": 60,
        "subscriptions_table": "",
        "webhook_delivery_queue_url": "",
        "webhook_dead_letter_queue_url": "",
        "notify_topic_arn": "",
        "webhook_allow_loopback": False,
        "webhook_timeout_seconds": 10,
        "webhook_max_attempts": 10,
        "webhook_retry_base_seconds": 5,
        "webhook_retry_factor": 3,
        "webhook_retry_max_delay_seconds": 10_800,
        "webhook_disable_after_failures": 15,
        "webhook_disable_after_seconds": 86_400,
        "webhook_max_subscriptions": 25,
        "callback_ttl_seconds": 604_800,
    }
    assert {name: getattr(settings, name) for name in expected} == expected


# (variable, the value at the end of its range, which loads; one step past it, which is refused)
RANGE_ENDS = [
    # Sizes, counts and times a function divides by, loops to or waits for: 0 would refuse every query, page
    # nothing, retry never or expire a URL as it is handed out.
    ("MAX_SQL_BYTES", "1", "0"),
    ("MAX_PARAMETER_BYTES", "1", "0"),
    ("RESULT_RETENTION_DAYS", "1", "0"),
    ("RESULT_MAX_ATTEMPTS", "1", "0"),
    ("RESULT_PART_MAX_ROWS", "1", "0"),
    ("PRESIGN_TTL_SECONDS", "1", "0"),
    ("API_PAGE_MAX", "1", "0"),
    ("API_MAX_BODY_BYTES", "1", "0"),
    ("BULK_MAX_BATCH_BYTES", "1", "0"),
    ("BULK_MAX_FILES", "1", "0"),
    ("BULK_PAGE_MAX_RECORDS", "1", "0"),
    ("BULK_PAGE_MAX_BYTES", "1", "0"),
    ("BULK_INLINE_DOWNLOAD_MAX_BYTES", "1", "0"),
    ("UPLOAD_URL_TTL_SECONDS", "1", "0"),
    ("EXECUTOR_MAX_ATTEMPTS", "1", "0"),
    ("RECONCILE_AFTER_SECONDS", "1", "0"),
    ("REQUEUE_AFTER_SECONDS", "1", "0"),
    ("RECONCILE_BATCH_MAX", "1", "0"),
    ("TENANT_MAX_WAITS", "1", "0"),
    ("TENANT_WAIT_SECONDS", "2", "1"),
    ("SLOT_LEASE_SECONDS", "1", "0"),
    ("JWKS_CACHE_SECONDS", "1", "0"),
    ("WEBHOOK_TIMEOUT_SECONDS", "0.001", "0"),
    ("WEBHOOK_MAX_ATTEMPTS", "1", "0"),
    ("WEBHOOK_RETRY_BASE_SECONDS", "0.001", "0"),
    ("WEBHOOK_RETRY_FACTOR", "1", "0.999"),
    ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "1", "0"),
    ("WEBHOOK_DISABLE_AFTER_FAILURES", "1", "0"),
    ("WEBHOOK_MAX_SUBSCRIPTIONS", "1", "0"),
    ("CALLBACK_TTL_SECONDS", "1", "0"),
    # 0 means something here (nothing inline, COPY's MAXERROR 0, every tenant paused, no sessions, no leeway or cache,
    # disable at the first failed run): taken, but never a negative.
    ("INLINE_MAX_ROWS", "0", "-1"),
    ("INLINE_MAX_BYTES", "0", "-1"),
    ("BULK_MAX_ERRORS", "0", "-1"),
    ("BULK_INLINE_RESULTS_MAX_BYTES", "0", "-1"),
    ("TENANT_MAX_RUNNING_STATEMENTS", "0", "-1"),
    ("SESSION_KEEP_ALIVE_SECONDS", "0", "-1"),
    ("TENANT_CACHE_SECONDS", "0", "-0.5"),
    ("JWT_LEEWAY_SECONDS", "0", "-1"),
    ("WEBHOOK_DISABLE_AFTER_SECONDS", "0", "-1"),
    # Ceilings: results past the 13 days a record promises, Redshift's MAXERROR ceiling, Lambda's 6 MiB (base64),
    # a URL outliving the credentials that sign it (an hour), the template's MaxValues.
    ("RESULT_RETENTION_DAYS", "13", "14"),
    ("PRESIGN_TTL_SECONDS", "3600", "3601"),
    ("UPLOAD_URL_TTL_SECONDS", "3600", "3601"),
    ("BULK_MAX_ERRORS", "100000", "100001"),
    ("BULK_MAX_BATCH_BYTES", "4194304", "4194305"),
    ("BULK_PAGE_MAX_BYTES", "4194304", "4194305"),
    ("TENANT_WAIT_SECONDS", "900", "901"),
    ("SESSION_KEEP_ALIVE_SECONDS", "86400", "86401"),
    ("TENANT_CACHE_SECONDS", "60", "60.5"),
    ("JWT_LEEWAY_SECONDS", "300", "301"),
    ("JWKS_CACHE_SECONDS", "3600", "3601"),
    ("WEBHOOK_TIMEOUT_SECONDS", "60", "60.5"),
    ("WEBHOOK_MAX_ATTEMPTS", "50", "51"),
]


@pytest.mark.parametrize(("variable", "end", "past"), RANGE_ENDS)
def test_a_setting_loads_at_the_end_of_its_range_and_is_refused_one_step_past_it(monkeypatch, variable, end, past):
    """A value at the end of a setting's range is what the function runs with; one step past it the function refuses
    to load, naming the setting, rather than run misconfigured (a zero page size, a URL outliving its credentials, a
    batch Lambda cannot carry)."""
    assert getattr(_load(monkeypatch, **{variable: end}), variable.lower()) == float(end)
    with pytest.raises(ValidationError) as refused:
        _load(monkeypatch, **{variable: past})
    assert variable.lower() in str(refused.value)


@pytest.mark.parametrize("variable", ["TENANT_DB_USER_PREFIX", "TENANT_SECRET_PREFIX", "JWT_TENANT_CLAIM"])
def test_a_one_character_prefix_or_claim_loads_and_an_empty_one_is_refused(monkeypatch, variable):
    """An empty tenant prefix would take in every database user or secret; an empty claim name no token has."""
    assert getattr(_load(monkeypatch, **{variable: "t"}), variable.lower()) == "t"
    with pytest.raises(ValidationError, match=variable.lower()):
        _load(monkeypatch, **{variable: ""})


@pytest.mark.parametrize("value", ["five", "nan", "inf", "-inf", ""])
def test_a_template_number_that_is_no_finite_number_is_refused_naming_the_setting(monkeypatch, value):
    """A whole-number setting a template Number sets takes a fraction as its ceiling; anything else that is not a
    finite number is refused as a validation error naming the setting (not an OverflowError or a crash in the
    rounding), so the function's load failure says which setting is wrong."""
    with pytest.raises(ValidationError, match="tenant_max_running_statements"):
        _load(monkeypatch, TENANT_MAX_RUNNING_STATEMENTS=value)


def test_a_fraction_of_a_template_number_is_read_as_the_whole_number_above_it(monkeypatch):
    settings = _load(monkeypatch, TENANT_MAX_RUNNING_STATEMENTS="0.1", WEBHOOK_MAX_ATTEMPTS="49.5")
    assert (settings.tenant_max_running_statements, settings.webhook_max_attempts) == (1, 50)


JWT = {"JWT_ISSUER": "https://idp.example/", "JWT_AUDIENCE": "api"}


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example/.well-known/jwks.json",
        "http://127.0.0.1:8080/jwks.json",
        "http://localhost:8080/jwks.json",
        "http://[::1]:8080/jwks.json",
    ],
)
def test_a_jwks_url_over_https_or_plain_http_to_this_machine_loads(monkeypatch, url):
    """The local stack's identity provider listens on the loopback address, under any of its names."""
    assert _load(monkeypatch, JWKS_URL=url, **JWT).jwks_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example/jwks.json",
        "http://127.0.0.2/jwks.json",
        "http://localhost.idp.example/jwks.json",
        "ftp://localhost/jwks.json",
        "idp.example/jwks.json",
    ],
)
def test_a_jwks_url_elsewhere_than_https_or_this_machine_is_refused_saying_so(monkeypatch, url):
    with pytest.raises(ValidationError, match="JWKS_URL must be an https:// URL"):
        _load(monkeypatch, JWKS_URL=url, **JWT)


def test_jwt_settings_without_a_jwks_url_are_not_checked(monkeypatch):
    """JWTs are off without JWKS_URL: an issuer alone, or a plain-HTTP one, is not an error."""
    assert _load(monkeypatch, JWT_ISSUER="http://idp.example/").jwt_issuer == "http://idp.example/"


def test_the_reconciler_requeues_before_it_gives_up(monkeypatch):
    """A job is queued again REQUEUE_AFTER_SECONDS after it lost its message and fails at PENDING_MAX_AGE_SECONDS:
    equal, it would fail before it was ever requeued."""
    settings = _load(monkeypatch, REQUEUE_AFTER_SECONDS="599", PENDING_MAX_AGE_SECONDS="600")
    assert (settings.requeue_after_seconds, settings.pending_max_age_seconds) == (599, 600)
    with pytest.raises(ValidationError, match="REQUEUE_AFTER_SECONDS must be shorter than PENDING_MAX_AGE_SECONDS"):
        _load(monkeypatch, REQUEUE_AFTER_SECONDS="600", PENDING_MAX_AGE_SECONDS="600")


def test_the_settings_a_process_loaded_cannot_be_changed(monkeypatch):
    """One process's settings are shared by every invocation its environment serves (get_settings caches them): a
    request cannot change them for the next."""
    settings = _load(monkeypatch)
    with pytest.raises(ValidationError):
        settings.max_sql_bytes = 1
    assert settings.max_sql_bytes == 100_000


def test_a_warehouse_workgroup_alone_loads(monkeypatch):
    monkeypatch.delenv("REDSHIFT_CLUSTER_ID", raising=False)
    for name, value in {"JOBS_TABLE": "jobs", "TENANTS_TABLE": "tenants", "REDSHIFT_WORKGROUP": "wg"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.redshift_workgroup, settings.redshift_cluster_id) == ("wg", None)


def test_the_process_settings_are_read_from_its_environment(monkeypatch):
    """get_settings is what every handler calls: it gives the settings the environment holds, once read."""
    from spectra.settings import get_settings

    _load(monkeypatch)
    get_settings.cache_clear()
    try:
        assert (get_settings().jobs_table, get_settings().webhook_max_attempts) == ("jobs", 10)
        monkeypatch.setenv("JOBS_TABLE", "other")
        assert get_settings().jobs_table == "jobs"
    finally:
        get_settings.cache_clear()
