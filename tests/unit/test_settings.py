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
