"""The tenant directory (spectra.tenants), the behaviour mutation testing found no test held: how a key is hashed (the
table's ``key#<sha256 hex>`` items outlive any release), which bearer tokens are refused before the table is read,
the key lookup's own checks, and a new tenant's read-only default. The DynamoDB contract (conditions, transactions) is
tests/integration/pipeline/test_tenant_directory.py's, and test_tenant_directory_pins.py beside it holds what the
mutation runs found there; here the table is a map of items read with ``get_item``."""

from __future__ import annotations

import re
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from pydantic import ValidationError

from spectra.errors import Unauthorized
from spectra.jobs import utcnow
from spectra.tenants import (
    CHANGEABLE_TENANT_FIELDS,
    KEY_PREFIX,
    Caller,
    Tenant,
    TenantDirectory,
    hash_api_key,
    identity_key,
    same_generation,
)

pytestmark = pytest.mark.unit


class ReadOnlyTable:
    """A DynamoDB client holding items (wire format, by ``pk``) for ``get_item``, counting the reads; its writes
    (``put_item``, ``update_item``) are recorded, not applied, and their conditions not evaluated."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []
        self.consistent: list[bool] = []
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def put_item(self, **request: Any) -> dict:
        self.writes.append(("put_item", request))
        return {}

    def update_item(self, **request: Any) -> dict:
        self.writes.append(("update_item", request))
        return {}

    def get_item(self, *, TableName: str, Key: dict, ConsistentRead: bool = False) -> dict:
        pk = Key["pk"]["S"]
        self.reads.append(pk)
        self.consistent.append(ConsistentRead)
        return {"Item": self.items[pk]} if pk in self.items else {}

    def put_tenant(self, tenant: Tenant) -> None:
        item = tenant.model_dump(mode="json", exclude_none=True)
        self.items[f"tenant#{tenant.tenant_id}"] = {"pk": {"S": f"tenant#{tenant.tenant_id}"}, **_wire(item)}

    def put_key(self, api_key: str, tenant_id: str, generation: str | None) -> None:
        item = {"tenant_id": tenant_id, "key_hint": api_key[:8], "created_at": utcnow().isoformat()}
        if generation is not None:
            item["generation"] = generation
        self.items[f"key#{hash_api_key(api_key)}"] = {"pk": {"S": f"key#{hash_api_key(api_key)}"}, **_wire(item)}


def _wire(item: dict[str, Any]) -> dict[str, Any]:
    return {k: TypeSerializer().serialize(v) for k, v in item.items()}


@pytest.fixture
def table() -> ReadOnlyTable:
    return ReadOnlyTable()


@pytest.fixture
def directory(table) -> TenantDirectory:
    return TenantDirectory(table, "tenants")


def test_a_key_is_stored_under_its_sha256_in_hex():
    """Every issued key's item is ``key#<sha256 hex of the key>``: another hash, a shorter digest or a key folded
    first would leave every key issued before the change unable to authenticate (or two keys on one item)."""
    assert hash_api_key("spk_example") == "5f4c47d2414de7c54c9c49a29fea0eb15c4f71ddec6f52a3f9703d77bedf8b6a"
    assert hash_api_key("spk_Example") != hash_api_key("spk_example")  # keys are case-sensitive


@pytest.mark.parametrize(
    "token",
    [
        "example",  # no spk_ prefix: not one of our keys (a JWT's business, or nobody's)
        "SPK_example",
        KEY_PREFIX + "x" * 253,  # 257 characters: longer than any key we issue
    ],
)
def test_a_token_that_cannot_be_a_key_is_refused_without_reading_the_table(directory, table, token):
    """A key is ``spk_`` and 43 characters; a token that cannot be one is refused before any read, even when an item
    for its hash exists, so garbage bearer tokens cost the authorizer no read (and a long one no hashing)."""
    tenant = Tenant.new("acme", db_user="tenant_acme")
    table.put_tenant(tenant)
    table.put_key(token, "acme", tenant.generation)
    with pytest.raises(Unauthorized):
        directory.authenticate(token)
    assert table.reads == []


def test_a_key_of_256_characters_is_still_looked_up(directory, table):
    """The bound is ``> 256``: a 256-character key is read (and found), so the bound is where the code says."""
    tenant = Tenant.new("acme", db_user="tenant_acme")
    table.put_tenant(tenant)
    key = KEY_PREFIX + "x" * 252
    table.put_key(key, "acme", tenant.generation)
    assert directory.authenticate(key).tenant_id == "acme"


@pytest.mark.parametrize("token", [KEY_PREFIX + "\ud800abc", KEY_PREFIX + "é" * 10])
def test_a_key_no_issued_key_can_be_is_refused_unauthorized_not_a_crash(directory, table, token):
    """Issued keys are ASCII (``spk_`` and URL-safe base64). A bearer token holding a lone surrogate (a JSON event's
    ``\\ud800``, as a direct invocation can send) could not be encoded for hashing: the authorizer raised
    UnicodeEncodeError, which API Gateway answers as AUTHORIZER_CONFIGURATION_ERROR, a 5xx, where a bad key is a 401.
    Any token that is not ASCII is refused as a bad key is, before the table is read."""
    with pytest.raises(Unauthorized):
        directory.authenticate(token)
    assert table.reads == []


def test_the_authorizer_answers_a_key_holding_a_lone_surrogate_unauthorized(directory, monkeypatch):
    """The same through the authorizer, as API Gateway reads its answer: ``Exception("Unauthorized")`` is a 401,
    anything else it raises a 5xx."""
    from types import SimpleNamespace

    from producers.authorizer import app as authorizer
    from tests.unit.test_authorizer import CONTEXT, request_event

    monkeypatch.setattr(authorizer, "get_ports", lambda budget: SimpleNamespace(tenants=directory, jwt=None))
    event = request_event(headers={"Authorization": f"Bearer {KEY_PREFIX}\ud800"})
    with pytest.raises(Exception) as raised:
        authorizer.lambda_handler(event, CONTEXT)
    assert type(raised.value) is Exception and str(raised.value) == "Unauthorized"


def test_an_issued_key_carries_256_random_bits_and_its_item_shows_only_a_hint(directory, table):
    """The module's promise: keys are 256-bit random tokens (``spk_`` and 43 URL-safe characters), the table keeps only
    their hash, and the key's item a hint of its first 4 characters past the prefix (list_keys shows it). Fewer bits
    would make keys guessable; a longer hint would store part of the secret in clear."""
    tenant = Tenant.new("acme", db_user="tenant_acme")
    table.put_tenant(tenant)
    key = directory.issue_key("acme")
    assert re.fullmatch(r"spk_[A-Za-z0-9_-]{43}", key)
    assert directory.issue_key("acme") != key
    puts = [request["Item"] for op, request in table.writes if op == "put_item"]
    assert puts[0]["pk"] == {"S": f"key#{hash_api_key(key)}"}
    assert puts[0]["key_hint"] == {"S": key[:8]}
    assert puts[0]["generation"] == {"S": tenant.generation}
    assert key[8:] not in str(table.writes)  # nothing past the hint is written anywhere


def test_each_tenant_gets_a_generation_of_64_random_bits():
    """A generation tells a tenant from an earlier one of the same id (its keys, jobs, subscriptions): drawn at random
    per creation, 16 hex characters, so two creations of one id do not draw the same one."""
    generations = {Tenant.new("acme", db_user="tenant_acme").generation for _ in range(50)}
    assert len(generations) == 50
    assert all(re.fullmatch(r"[0-9a-f]{16}", generation) for generation in generations)


def test_a_new_tenant_is_read_only_unless_it_is_given_writes():
    """The query API is read-only for a tenant created without ``allow_writes``: no write flag reaches the API in the
    authorizer's context, and it owns no schemas. A tenant created with it, and its schemas, may write there."""
    tenant = Tenant.new("acme", db_user="tenant_acme")
    assert (tenant.allow_writes, tenant.owned_schemas) == (False, [])
    assert "allow_writes" not in Caller.of(tenant).authorizer_context()
    writer = Tenant.new("acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme_work"])
    assert Caller.of(writer).authorizer_context()["allow_writes"] == "true"


ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (ARN + "spectra/acme-AbCdEf", ARN + "spectra/acme"),  # the full ARN: Secrets Manager's 6 characters go
        (ARN + "spectra/acme", ARN + "spectra/acme"),  # the partial ARN of the same secret: one identity
        (ARN + "spectra/team-acme01-AbCdEf", ARN + "spectra/team-acme01"),  # only the last part is the suffix
        (ARN + "spectra/acme-AbCde", ARN + "spectra/acme-AbCde"),  # 5 characters: part of the name
        (ARN + "spectra/acme-AbCdEfG", ARN + "spectra/acme-AbCdEfG"),  # 7: part of the name
    ],
)
def test_a_secret_is_one_identity_by_its_full_or_partial_arn(value, key):
    """A database identity serves one tenant, ever: a secret named by its full ARN and by its partial one (the Data
    API takes both) must be one identity record, or a second tenant could be given the first one's secret. Only the
    six characters Secrets Manager appends, at the end, are left out; the name itself is kept whole."""
    assert identity_key("secret_arn", value) == key


def test_a_user_is_one_identity_whatever_its_letters_case():
    """Redshift folds names' ASCII letters to lower case: ``tenant_ACME`` is the user ``tenant_acme``, one identity;
    nothing else is folded (``str.lower`` would make the Kelvin sign a ``k``, another user to Redshift)."""
    assert identity_key("db_user", "Tenant_ACME") == "tenant_acme"
    assert identity_key("db_user", "tenant_\u212a") == "tenant_\u212a"


@pytest.mark.parametrize("tenant_id", ["acme", "0", "a" * 63, "a-b_c9"])
def test_tenant_ids_that_are_accepted(tenant_id):
    assert Tenant(tenant_id=tenant_id, db_user="u", created_at=utcnow()).tenant_id == tenant_id


@pytest.mark.parametrize("tenant_id", ["Acme", "a" * 64, "acme#key", "acme\n", "-acme", "_acme", "", "acme "])
def test_tenant_ids_that_are_refused(tenant_id):
    """A tenant id names DynamoDB items (``tenant#<id>``, ``slots#<id>``), S3 prefixes and the default user
    ``tenant_<id>``: lower case letters, digits, ``_`` and ``-``, starting with a letter or digit, 63 at most. ``#``
    would let one id's items read as another's; upper case would make two ids of one user."""
    with pytest.raises(ValidationError):
        Tenant(tenant_id=tenant_id, db_user="u", created_at=utcnow())


@pytest.mark.parametrize("db_user", ['tenant"acme', "tenant acme", "1tenant", "u" * 128, "tenant;drop", "tenant\n"])
def test_database_users_that_are_refused(db_user):
    """The user a tenant's statements run as is an unquoted Redshift name (127 characters at most): a quote, a space
    or a ``;`` in it could only come from a mistake or an attack on whatever writes it into SQL."""
    with pytest.raises(ValidationError):
        Tenant(tenant_id="acme", db_user=db_user, created_at=utcnow())


def test_a_database_user_of_127_characters_is_accepted():
    assert Tenant(tenant_id="acme", db_user="U" * 127, created_at=utcnow()).db_user == "U" * 127


@pytest.mark.parametrize("tier", ["Gold", "gold plan", "1gold", "g" * 33, "gold/../x", ""])
def test_tiers_that_are_refused(tier):
    """A tier names a usage plan (``<stack>-<tier>``, template.yaml): lower case, digits and ``-``, 32 at most."""
    with pytest.raises(ValidationError):
        Tenant(tenant_id="acme", db_user="u", created_at=utcnow(), tier=tier)
    assert Tenant(tenant_id="acme", db_user="u", created_at=utcnow(), tier="g" + "-2" * 15 + "x").tier


def record(**fields: Any) -> Tenant:
    return Tenant(tenant_id="acme", db_user="u", created_at=utcnow(), **fields)


def test_a_tenants_own_caps_are_bounded_below():
    """No running statements is a cap (0: the tenant may run none); no waits is not (0 would refuse every one-call
    query while saying the tenant has a share of them): ``max_waits`` is 1 at least."""
    assert record(max_running_statements=0).max_running_statements == 0
    with pytest.raises(ValidationError):
        record(max_running_statements=-1)
    with pytest.raises(ValidationError):
        record(max_waits=0)
    assert record(max_waits=1).max_waits == 1


def test_a_tenant_and_a_caller_cannot_be_changed_in_place():
    """Both are shared (the executor's tenant cache, a request's caller): a change in place would reach every holder."""
    tenant = Tenant(tenant_id="acme", db_user="u", created_at=utcnow())
    with pytest.raises(ValidationError):
        tenant.allow_writes = True
    caller = Caller.of(tenant)
    with pytest.raises(ValidationError):
        caller.tenant_id = "other"


def test_what_an_update_may_change():
    """Not the id, the generation (keys and jobs are bound to it), the active flag (set_active records when), the
    keys or the creation time."""
    changeable = {"db_user", "secret_arn", "tier", "usage_key", "max_running_statements", "max_waits"}
    assert changeable | {"allow_writes", "owned_schemas"} == CHANGEABLE_TENANT_FIELDS


@pytest.mark.parametrize(
    ("current", "made_under", "same"),
    [("g1", "g1", True), ("g2", "g1", False), (None, "g1", True), ("g1", None, True), (None, None, True)],
)
def test_what_belongs_to_a_tenant_of_its_generation(current, made_under, same):
    """A tenant created again under an id sees none of its predecessor's; where a generation is unknown, the id
    decides."""
    assert same_generation(current, made_under) is same


def test_a_keyed_id_is_the_tenants_of_this_generation():
    """The id of what a caller makes under an idempotency key: the same for the same tenant, generation and key (so a
    retry finds it), another under another generation (a tenant created again does not find its predecessor's), and
    as long as a random one (128 bits, URL-safe, no padding)."""
    caller = Caller(tenant_id="acme", generation="g1")
    assert caller.keyed_id("sub_", "k1") == "sub_k4rJkmvsN5TiH9lPK3JK3A"
    assert Caller(tenant_id="acme", generation="g2").keyed_id("sub_", "k1") != caller.keyed_id("sub_", "k1")
    assert Caller(tenant_id="acme").keyed_id("sub_", "k1") != caller.keyed_id("sub_", "k1")
    # the parts are separated: tenant "ab" with key "c" is not tenant "a" with key "bc"
    assert Caller(tenant_id="ab").keyed_id("p", "c") != Caller(tenant_id="a").keyed_id("p", "bc")


def test_the_authorizer_context_carries_the_generation_and_both_identities():
    """The API's jobs run only while the tenant keeps the generation the authorizer saw; the identity is what the
    statements run as."""
    caller = Caller(tenant_id="acme", db_user="tenant_acme", secret_arn=ARN + "x", generation="g1")
    assert caller.authorizer_context() == {
        "tenant_id": "acme",
        "db_user": "tenant_acme",
        "secret_arn": ARN + "x",
        "generation": "g1",
    }


def test_a_context_is_read_by_our_keys_alone():
    """API Gateway adds keys of its own (``principalId``, ``integrationLatency`` as a number): they are passed over,
    not refused; an empty entry of the owned schemas is no schema."""
    caller = Caller.from_authorizer_context(
        {"tenant_id": "acme", "principalId": "acme", "integrationLatency": 3, "owned_schemas": "a,,b,"}
    )
    assert caller == Caller(tenant_id="acme", owned_schemas=("a", "b"))


@pytest.mark.parametrize(
    "context", [None, {}, {"tenant_id": ""}, {"tenant_id": 5}, {"tenant_id": "acme", "generation": 1}]
)
def test_a_context_our_authorizer_cannot_have_set_is_unauthorized(context):
    with pytest.raises(Unauthorized):
        Caller.from_authorizer_context(context)


@pytest.mark.parametrize("schemas", [["pg_temp"], ["work", "pg_catalog"]])
def test_a_system_schema_is_no_tenants(schemas):
    with pytest.raises(ValueError, match="pg_"):
        TenantDirectory.refuse_system_schemas(schemas)


@pytest.mark.parametrize("schemas", [None, [], ["work", "pgdata", "my_pg_x"]])
def test_other_schemas_may_be_owned(schemas):
    TenantDirectory.refuse_system_schemas(schemas)


def test_list_keys_shows_only_keys_whose_item_names_the_tenant(directory, table):
    """The listing on the tenant record is not the last word: a hash listed there whose key item is gone (revoked)
    or names another tenant is not shown, so an operator never sees, or revokes by hash, another tenant's key."""
    tenant = Tenant.new("acme", db_user="tenant_acme")
    table.put_tenant(tenant)
    mine, theirs, gone = KEY_PREFIX + "mine", KEY_PREFIX + "theirs", KEY_PREFIX + "gone"
    table.put_key(mine, "acme", tenant.generation)
    table.put_key(theirs, "other", tenant.generation)
    listing = {hash_api_key(key) for key in (mine, theirs, gone)}
    table.items["tenant#acme"]["key_hashes"] = {"SS": sorted(listing)}
    assert [key.key_hash for key in directory.list_keys("acme")] == [hash_api_key(mine)]


class TransactionsTable(ReadOnlyTable):
    """Records transactions and deletes too (applied to nothing)."""

    def transact_write_items(self, **request: Any) -> dict:
        self.writes.append(("transact_write_items", request))
        return {}

    def delete_item(self, **request: Any) -> dict:
        self.writes.append(("delete_item", request))
        return {}


def test_a_tenants_delete_holds_only_while_its_keys_are_as_read():
    """The record's delete is conditional on its key listing as read (and its generation): a key issued between the
    read and the delete makes the delete read again and delete that key too, rather than leave its item behind."""
    table = TransactionsTable()
    tenant = Tenant.new("acme", db_user="tenant_acme")
    table.put_tenant(tenant)
    table.items["tenant#acme"]["key_hashes"] = {"SS": ["h1", "h2"]}
    assert TenantDirectory(table, "tenants").delete_tenant("acme") is True
    (_, transaction), *deletes = table.writes
    record = transaction["TransactItems"][0]["Delete"]
    assert record["Key"] == {"pk": {"S": "tenant#acme"}}
    assert record["ConditionExpression"] == "generation = :g AND key_hashes = :k"
    values = record["ExpressionAttributeValues"]
    assert values[":g"] == {"S": tenant.generation} and sorted(values[":k"]["SS"]) == ["h1", "h2"]
    assert sorted(request["Key"]["pk"]["S"] for _, request in deletes) == ["key#h1", "key#h2"]


def test_the_key_lookup_reads_consistently(directory, table):
    """A revoked key, a deactivated or deleted tenant are refused from the moment the write returns: the key and
    tenant reads are strongly consistent, where an eventually consistent one could still see the old items."""
    tenant = Tenant.new("acme", db_user="tenant_acme")
    table.put_tenant(tenant)
    table.put_key(KEY_PREFIX + "k", "acme", tenant.generation)
    assert directory.authenticate(KEY_PREFIX + "k").tenant_id == "acme"
    assert table.reads == [f"key#{hash_api_key(KEY_PREFIX + 'k')}", "tenant#acme"]
    assert table.consistent == [True, True]
