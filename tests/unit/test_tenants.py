"""Tenant records and the caller the authorizer vouches for: the write flag and owned schemas travel intact."""

import pytest
from pydantic import ValidationError

from spectra.jobs import utcnow
from spectra.tenants import Caller, Tenant

pytestmark = pytest.mark.unit


def test_a_record_written_before_the_write_flag_existed_is_read_only():
    tenant = Tenant.model_validate({"tenant_id": "acme", "db_user": "tenant_acme", "created_at": utcnow()})
    assert tenant.allow_writes is False
    assert tenant.owned_schemas == []


@pytest.mark.parametrize("schema", ["Owned", "a,b", "", "1abc", "x" * 128, 'q"uote'])
def test_owned_schemas_are_plain_lower_case_names(schema):
    with pytest.raises(ValidationError):
        Tenant(tenant_id="acme", db_user="tenant_acme", created_at=utcnow(), allow_writes=True, owned_schemas=[schema])


@pytest.mark.parametrize(
    "tenant",
    [
        Tenant(tenant_id="acme", db_user="tenant_acme", created_at=utcnow()),
        Tenant(
            tenant_id="acme",
            db_user="tenant_acme",
            created_at=utcnow(),
            allow_writes=True,
            owned_schemas=["acme_work", "acme$tmp"],
        ),
        Tenant(tenant_id="srv", secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:x", created_at=utcnow()),
    ],
)
def test_the_authorizer_context_carries_the_caller_as_strings_and_back(tenant):
    caller = Caller.of(tenant)
    context = caller.authorizer_context()
    assert all(isinstance(value, str) for value in context.values())  # API Gateway takes nothing else
    assert Caller.from_authorizer_context(context) == caller
    assert caller.allow_writes is tenant.allow_writes
    assert list(caller.owned_schemas) == tenant.owned_schemas


def test_a_read_only_caller_adds_nothing_to_the_context():
    caller = Caller.of(Tenant(tenant_id="acme", db_user="tenant_acme", created_at=utcnow()))
    assert caller.authorizer_context() == {"tenant_id": "acme", "db_user": "tenant_acme"}


def test_only_the_exact_flag_value_grants_writes():
    assert not Caller.from_authorizer_context({"tenant_id": "acme", "allow_writes": "True "}).allow_writes
    assert not Caller.from_authorizer_context({"tenant_id": "acme", "allow_writes": "false"}).allow_writes
    assert Caller.from_authorizer_context({"tenant_id": "acme", "allow_writes": "true"}).allow_writes
