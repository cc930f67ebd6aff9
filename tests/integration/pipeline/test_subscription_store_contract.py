"""One scenario suite, two subscription stores: the in-memory fake the unit tier uses and the real
SubscriptionStore on DynamoDB (moto), on a table created from template.yaml's own ``SubscriptionsTable``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spectra.errors import Conflict, TenantGone
from spectra.notify.models import (
    DisabledReason,
    Subscription,
    SubscriptionKind,
    SubscriptionStatus,
    callback_id,
    new_subscription_id,
)
from spectra.notify.signing import new_secret
from spectra.notify.store import SubscriptionStore
from spectra.tenants import TenantDirectory
from tests.fixtures.aws import table_from_template
from tests.unit.fakes import FakeSubscriptionStore, FakeTenants

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", "dynamodb"])
def store(request):
    if request.param == "fake":
        yield FakeSubscriptionStore()
        return
    with table_from_template(request.getfixturevalue("local_aws"), "SubscriptionsTable", "subscriptions-") as (
        db,
        name,
    ):
        yield SubscriptionStore(db, name)


@pytest.fixture(params=["fake", "dynamodb"])
def store_and_tenants(request):
    """A subscription store and the tenant directory whose records its creates may be conditional on."""
    if request.param == "fake":
        yield FakeSubscriptionStore(), FakeTenants()
        return
    aws = request.getfixturevalue("local_aws")
    with (
        table_from_template(aws, "SubscriptionsTable", "subscriptions-") as (db, subscriptions),
        table_from_template(aws, "TenantsTable", "tenants-") as (_, tenants),
    ):
        yield SubscriptionStore(db, subscriptions), TenantDirectory(db, tenants)


def make(tenant: str = "acme", **fields) -> Subscription:
    values = {
        "subscription_id": new_subscription_id(),
        "tenant_id": tenant,
        "url": "https://hooks.acme.example/in",
        "events": ["Job Completed", "Job Failed"],
        "filter": {"status": ["FAILED"], "format": ["csv", "json"]},
        "secret": new_secret(),
        "created_at": T0,
        **fields,
    }
    return Subscription(**values)


def test_a_subscription_reads_back_as_written_and_only_by_its_tenant(store):
    created = store.create(make())
    assert store.get("acme", created.subscription_id) == created
    assert store.get("globex", created.subscription_id) is None
    with pytest.raises(Conflict):
        store.create(created)


def test_listing_pages_through_standing_subscriptions_only(store):
    mine = {store.create(make()).subscription_id for _ in range(5)}
    store.create(make(tenant="globex"))
    store.create(
        make(subscription_id=callback_id("j_1"), kind=SubscriptionKind.CALLBACK, job_id="j_1"),
        expires_at=datetime.now(UTC) + timedelta(days=7),  # a callback past its expiry reads as gone: not T0's
    )
    seen, after = [], None
    while True:
        page = store.list_for_tenant("acme", limit=2, after=after)
        assert len(page.subscriptions) <= 2
        seen.extend(s.subscription_id for s in page.subscriptions)
        after = page.resume_after
        if not after:
            break
    assert sorted(seen) == sorted(mine)
    assert {s.subscription_id for s in store.webhooks_for_tenant("acme", consistent=True)} == mine
    assert store.webhooks_for_tenant("nobody") == []
    assert store.get("acme", callback_id("j_1")).job_id == "j_1"


def test_a_callback_past_its_expiry_is_gone_before_the_ttl_deletes_it(store):
    """A query's callback expires after 7 days (``expires_at``); DynamoDB's TTL deletes it days later and GetItem
    returns it until then (moto never deletes it). Read as gone from its expiry: ``GET /v1/subscriptions/cbk_...``
    answered it, and a job event handled meanwhile was delivered to it."""
    now = datetime.now(UTC)
    callback = {"kind": SubscriptionKind.CALLBACK}
    new = store.create(
        make(subscription_id=callback_id("j_new"), job_id="j_new", **callback), expires_at=now + timedelta(days=7)
    )
    expired = store.create(
        make(subscription_id=callback_id("j_gone"), job_id="j_gone", **callback), expires_at=now - timedelta(seconds=2)
    )
    assert store.get("acme", new.subscription_id) == new
    assert store.get("acme", expired.subscription_id) is None


def test_a_standing_subscription_past_its_expiry_is_neither_listed_nor_counted(store):
    """A deleted tenant's standing subscriptions get an ``expires_at`` (delete_tenant). One made before subscriptions
    recorded their generation is its id's, so a tenant created again under the id lists and counts it: past its
    expiry it was still listed, and counted against the limit, while GET answered 404, until the TTL deleted it."""
    now = datetime.now(UTC)
    kept = store.create(make(), expires_at=now + timedelta(days=37))
    ended = store.create(make(), expires_at=now - timedelta(seconds=2))
    live = store.create(make())
    assert store.get("acme", ended.subscription_id) is None
    listed = {s.subscription_id for s in store.list_for_tenant("acme", limit=10).subscriptions}
    assert listed == {kept.subscription_id, live.subscription_id}
    assert {s.subscription_id for s in store.webhooks_for_tenant("acme", consistent=True)} == listed


def test_a_page_looks_at_its_limit_before_leaving_the_expired_out(store):
    """As DynamoDB's Query applies its filter after its Limit: a page whose items are all past their expiry comes back
    empty with a position, and the next page holds the live one (the fake left the expired out first, so unit tests
    never met the short pages README warns of: the review of the listing's filter)."""
    now = datetime.now(UTC)
    ended_id, live_id = sorted(new_subscription_id() for _ in range(2))
    store.create(make(subscription_id=ended_id), expires_at=now - timedelta(seconds=2))
    store.create(make(subscription_id=live_id))
    first = store.list_for_tenant("acme", limit=1)
    assert first.subscriptions == [] and first.resume_after == ended_id
    second = store.list_for_tenant("acme", limit=1, after=first.resume_after)
    assert [s.subscription_id for s in second.subscriptions] == [live_id] and second.resume_after is None


def test_a_position_never_leaves_the_tenants_partition(store):
    mine = [store.create(make()).subscription_id for _ in range(2)]
    theirs = store.create(make(tenant="globex")).subscription_id
    after = min(mine)  # a position in the caller's own partition: never another tenant's items
    listed = store.list_for_tenant("acme", limit=10, after=after).subscriptions
    assert {s.tenant_id for s in listed} == {"acme"} and theirs not in {s.subscription_id for s in listed}


def test_delete(store):
    created = store.create(make())
    assert store.delete("globex", created.subscription_id) is False
    assert store.delete("acme", created.subscription_id) is True
    assert store.delete("acme", created.subscription_id) is False
    assert store.get("acme", created.subscription_id) is None


def test_a_subscription_answered_to_a_repeat_is_not_withdrawn(store):
    kept, dropped = store.create(make()), store.create(make())
    assert store.answer("acme", kept.subscription_id) == kept  # read back as written, the mark not shown
    assert store.answer("globex", kept.subscription_id) is None
    assert store.withdraw("acme", kept.subscription_id) is False
    assert store.withdraw("acme", dropped.subscription_id) is True
    assert store.get("acme", kept.subscription_id) == kept and store.get("acme", dropped.subscription_id) is None
    assert store.answer("acme", dropped.subscription_id) is None  # gone: nothing is made again
    assert store.get("acme", dropped.subscription_id) is None
    assert store.delete("acme", kept.subscription_id) is True


def test_delivery_state_counts_failures_in_a_row_and_a_success_resets_them(store):
    sid = store.create(make()).subscription_id
    first = store.record_failure("acme", sid, status=500, error="HTTP 500", at=T0)
    assert (first.delivery.consecutive_failures, first.delivery.last_status) == (1, 500)
    second = store.record_failure("acme", sid, status=None, error="timed out after 10s", at=T0 + timedelta(seconds=5))
    assert second.delivery.consecutive_failures == 2 and second.delivery.last_status is None
    assert second.delivery.last_error == "timed out after 10s"
    assert second.delivery.last_attempt_at == T0 + timedelta(seconds=5)
    assert first.delivery.failing_since == second.delivery.failing_since == T0  # since the first of the row
    ok = store.record_success("acme", sid, status=204, at=T0 + timedelta(seconds=9))
    assert ok.delivery.consecutive_failures == 0 and ok.delivery.delivered == 1 and ok.delivery.last_status == 204
    assert ok.delivery.last_success_at == T0 + timedelta(seconds=9) and ok.delivery.failed_attempts == 2
    assert ok.delivery.last_error is None and ok.delivery.failing_since is None  # it did not fail
    assert store.get("acme", sid) == ok
    again = store.record_failure("acme", sid, status=503, error="HTTP 503", at=T0 + timedelta(hours=1))
    assert again.delivery.failing_since == T0 + timedelta(hours=1)
    assert store.record_failure("acme", "sub_missing", status=500, error="x", at=T0) is None
    assert store.record_success("acme", "sub_missing", status=200, at=T0) is None


def test_a_failure_after_a_spell_with_no_attempt_starts_a_new_run(store):
    sid = store.create(make()).subscription_id
    gap = timedelta(hours=6)
    for seconds in (0, 5):
        store.record_failure("acme", sid, status=503, error="HTTP 503", at=T0 + timedelta(seconds=seconds), run_gap=gap)
    close = store.record_failure("acme", sid, status=None, error="x", at=T0 + timedelta(seconds=5) + gap, run_gap=gap)
    assert (close.delivery.consecutive_failures, close.delivery.failing_since) == (3, T0)
    later = T0 + timedelta(days=2)
    new = store.record_failure("acme", sid, status=None, error="timed out", at=later, run_gap=gap)
    assert (new.delivery.consecutive_failures, new.delivery.failing_since, new.delivery.failed_attempts) == (
        1,
        later,
        4,
    )
    assert (new.delivery.last_status, new.delivery.last_error, new.delivery.last_attempt_at) == (
        None,
        "timed out",
        later,
    )
    assert store.get("acme", sid) == new
    assert store.record_failure("acme", "sub_missing", status=500, error="x", at=later, run_gap=gap) is None
    first = store.create(make()).subscription_id  # no attempt yet: a run starts
    assert (
        store.record_failure("acme", first, status=500, error="x", at=later, run_gap=gap).delivery.failing_since
        == later
    )


def test_a_failure_another_attempt_lands_beside_is_counted_not_taken_for_a_gone_subscription(local_aws):
    """After a quiet spell a failure takes two conditional writes; another attempt written between them refused both,
    and the failure was answered as if the subscription were gone: its delivery dropped, never retried (the diff
    review). DynamoDB's store only: the fake decides in one step."""
    with table_from_template(local_aws, "SubscriptionsTable", "subscriptions-") as (db, name):
        store = SubscriptionStore(db, name)
        sid = store.create(make()).subscription_id
        gap = timedelta(hours=6)
        store.record_failure("acme", sid, status=503, error="old", at=T0, run_gap=gap)
        later = T0 + timedelta(days=1)
        update, calls = store._update, []

        def another_attempt_between(*args, **kwargs):
            calls.append(args)
            if len(calls) == 2:  # this failure's second write: another one lands first
                store._update = update
                store.record_failure("acme", sid, status=503, error="other", at=later, run_gap=gap)
            return update(*args, **kwargs)

        store._update = another_attempt_between
        counted = store.record_failure(
            "acme", sid, status=502, error="this", at=later + timedelta(seconds=1), run_gap=gap
        )
        assert counted is not None
        assert (counted.delivery.consecutive_failures, counted.delivery.failing_since) == (2, later)
        assert (counted.delivery.last_error, counted.delivery.failed_attempts) == ("this", 3)


def test_delivery_state_writes_only_to_the_subscription_made_when_the_attempt_read_it(store):
    """One deleted and made again under the same id (its Idempotency-Key's) is another subscription."""
    made = store.create(make())
    sid = made.subscription_id
    later = made.created_at + timedelta(seconds=1)
    assert store.record_failure("acme", sid, status=410, error="HTTP 410", at=T0, made_at=later) is None
    assert store.record_success("acme", sid, status=200, at=T0, made_at=later) is None
    assert store.disable("acme", sid, reason=DisabledReason.GONE, message="gone", at=T0, made_at=later) is None
    assert store.mark_disabled_event_published("acme", sid, made_at=later) is None
    assert store.get("acme", sid) == made
    counted = store.record_failure("acme", sid, status=500, error="HTTP 500", at=T0, made_at=made.created_at)
    assert counted.delivery.consecutive_failures == 1
    assert store.disable("acme", sid, reason=DisabledReason.GONE, message="gone", at=T0, made_at=made.created_at)


def test_disabling_happens_once(store):
    sid = store.create(make()).subscription_id
    disabled = store.disable("acme", sid, reason=DisabledReason.GONE, message="410", at=T0)
    assert disabled.status is SubscriptionStatus.DISABLED and disabled.disabled_reason is DisabledReason.GONE
    assert (disabled.disabled_at, disabled.disabled_message, disabled.disabled_event_published) == (T0, "410", False)
    assert store.disable("acme", sid, reason=DisabledReason.GONE, message="again", at=T0) is None
    assert store.mark_disabled_event_published("acme", sid).disabled_event_published is True
    assert store.disable("acme", "sub_missing", reason=DisabledReason.GONE, message="x", at=T0) is None


def test_disabling_for_failures_in_a_row_needs_them_to_still_stand(store):
    """The count a failure returned can be stale by the time the disable is written: a success in between reset it
    and the endpoint works. The disable is conditional on the count; a 410 Gone needs only the subscription active."""
    sid = store.create(make()).subscription_id
    for _ in range(3):
        store.record_failure("acme", sid, status=503, error="HTTP 503", at=T0)
    store.record_success("acme", sid, status=200, at=T0 + timedelta(seconds=1))
    kwargs = {"reason": DisabledReason.CONSECUTIVE_FAILURES, "message": "3 in a row", "at": T0}
    assert store.disable("acme", sid, **kwargs, failures_at_least=3) is None
    assert store.get("acme", sid).status is SubscriptionStatus.ACTIVE
    for _ in range(3):
        store.record_failure("acme", sid, status=503, error="HTTP 503", at=T0 + timedelta(seconds=2))
    assert store.disable("acme", sid, **kwargs, failures_at_least=4) is None
    disabled = store.disable("acme", sid, **kwargs, failures_at_least=3)
    assert disabled.status is SubscriptionStatus.DISABLED and disabled.delivery.consecutive_failures == 3
    other = store.create(make()).subscription_id  # no failures at all: 410 Gone disables it anyway
    gone = store.disable("acme", other, reason=DisabledReason.GONE, message="410", at=T0)
    assert gone.status is SubscriptionStatus.DISABLED and gone.delivery.consecutive_failures == 0


def test_a_create_checked_against_its_tenant_stores_nothing_once_the_tenant_is_gone(store_and_tenants):
    """``tenant_check`` (the directory's ``current_check``) holds while the tenant record is of the caller's
    generation: deleted, or deleted and created again, the create is refused (TenantGone) and nothing is stored."""
    store, tenants = store_and_tenants
    tenant = tenants.create_tenant("acme", db_user="tenant_acme")
    current = tenants.current_check("acme", tenant.generation)
    first = store.create(make(tenant_generation=tenant.generation), tenant_check=current)
    assert store.get("acme", first.subscription_id) == first
    with pytest.raises(Conflict):  # its id exists: the same Conflict as without the check
        store.create(first, tenant_check=tenants.current_check("acme", tenant.generation))
    with pytest.raises(TenantGone):  # a caller from before generations is not this tenant's
        store.create(make(), tenant_check=tenants.current_check("acme", None))
    assert tenants.delete_tenant("acme") is True
    late = make(tenant_generation=tenant.generation)
    with pytest.raises(TenantGone):
        store.create(late, tenant_check=tenants.current_check("acme", tenant.generation))
    tenants.create_tenant("acme", db_user="tenant_acme_2")
    with pytest.raises(TenantGone):
        store.create(late, tenant_check=tenants.current_check("acme", tenant.generation))
    assert store.get("acme", late.subscription_id) is None
    assert [s.subscription_id for s in store.webhooks_for_tenant("acme", consistent=True)] == [first.subscription_id]
