import pytest
from pydantic import ValidationError

from spectra.settings import Settings, get_settings

pytestmark = pytest.mark.unit

BASE = {"JOBS_TABLE": "jobs", "TENANTS_TABLE": "tenants"}


def test_reads_environment(monkeypatch):
    for k, v in {**BASE, "REDSHIFT_CLUSTER_ID": "c1", "INLINE_MAX_ROWS": "5"}.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    assert (settings.jobs_table, settings.redshift_cluster_id, settings.inline_max_rows) == ("jobs", "c1", 5)
    assert settings.redshift_database == "dev"


@pytest.mark.parametrize(
    "warehouse", [{}, {"REDSHIFT_CLUSTER_ID": "c", "REDSHIFT_WORKGROUP": "w"}, {"REDSHIFT_CLUSTER_ID": ""}]
)
def test_exactly_one_warehouse(monkeypatch, warehouse):
    monkeypatch.delenv("REDSHIFT_CLUSTER_ID", raising=False)
    monkeypatch.delenv("REDSHIFT_WORKGROUP", raising=False)
    for k, v in {**BASE, **warehouse}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match="exactly one"):
        Settings()


def test_factory_is_cached(monkeypatch):
    monkeypatch.delenv("REDSHIFT_CLUSTER_ID", raising=False)
    for k, v in {**BASE, "REDSHIFT_WORKGROUP": "wg"}.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


JWT = {
    "JWKS_URL": "https://idp.example/.well-known/jwks.json",
    "JWT_ISSUER": "https://idp.example/",
    "JWT_AUDIENCE": "api",
}


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"JWT_ISSUER": ""}, "JWT_ISSUER and JWT_AUDIENCE"),
        ({"JWT_AUDIENCE": ""}, "JWT_ISSUER and JWT_AUDIENCE"),
        ({"JWKS_URL": "http://idp.example/jwks.json"}, "https"),  # keys over plain HTTP could be swapped on the way
        ({"JWKS_URL": "file:///etc/passwd"}, "https"),
    ],
)
def test_jwt_settings_must_be_complete_and_fetched_over_https(monkeypatch, changes, error):
    for k, v in {**BASE, "REDSHIFT_CLUSTER_ID": "c", **JWT, **changes}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match=error):
        Settings()


def test_jwts_are_off_by_default_and_a_loopback_jwks_may_be_plain_http(monkeypatch):
    for k, v in {**BASE, "REDSHIFT_CLUSTER_ID": "c"}.items():
        monkeypatch.setenv(k, v)
    assert Settings().jwks_url == ""
    monkeypatch.setenv("JWKS_URL", "http://127.0.0.1:8080/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", "i")
    monkeypatch.setenv("JWT_AUDIENCE", "a")
    assert Settings().jwt_tenant_claim == "tenant_id"


@pytest.mark.parametrize("variable", ["PRESIGN_TTL_SECONDS", "UPLOAD_URL_TTL_SECONDS"])
def test_a_presigned_url_lives_no_longer_than_the_credentials_that_sign_it(monkeypatch, variable):
    """Signed with a function role's temporary credentials, a URL expires with them whatever it says: upload URLs
    were allowed 7 days (found by the limits review)."""
    for k, v in {**BASE, "REDSHIFT_CLUSTER_ID": "c1", variable: "3601"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match="less than or equal to 3600"):
        Settings()
    monkeypatch.setenv(variable, "3600")
    assert Settings()
