"""template.yaml's parameters at the ends of the ranges their constraints allow: what an operator may deploy, the code
must run with (README, Deploy). Found by the parameters review; each test failed on the code before its fix."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from cfnlint.decode import decode

from spectra.notify.delivery import Outcome, backoff_seconds, deliver
from spectra.notify.fanout import fan_out
from spectra.notify.transport import HttpOutcome
from spectra.settings import Settings
from tests.unit.test_notify import T0, ports_with_notify, queued_delivery
from tests.unit.test_template import TEMPLATE, template  # noqa: F401  (the decoded template.yaml, one per module)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def parameters(template) -> dict:  # noqa: F811
    return template["Parameters"]


def test_a_retry_factor_the_template_allows_schedules_even_the_last_retry(parameters):
    """WebhookRetryFactor has no MaxValue: 10,000,000 deploys, and its 49th power overflows a float. The retry after
    attempt 49 (of WebhookMaxAttempts' most, 50) raised OverflowError instead of being queued: the message came back,
    the receiver got the same POST again, and after five of those the delivery sat in the delivery queue's DLQ."""
    factor = float(parameters["WebhookRetryFactor"].get("MaxValue", 10_000_000))  # the most it deploys with
    most = int(parameters["WebhookMaxAttempts"]["MaxValue"])
    ports = ports_with_notify(webhook_retry_factor=factor, webhook_max_attempts=most)
    _, delivery = queued_delivery(ports)
    ports.notify.transport.answer(HttpOutcome(503, "HTTP 503 Service Unavailable"))
    assert deliver(ports, delivery.model_copy(update={"attempt": most - 1}), now=T0) is Outcome.RETRY_SCHEDULED
    (retry,) = ports.notify.deliveries.take()
    cap = ports.settings.webhook_retry_max_delay_seconds
    assert retry.delivery.attempt == most and cap / 2 <= (retry.delivery.not_before - T0).total_seconds() <= cap


def test_a_dropped_file_outlives_the_longest_its_job_may_need_it(parameters):
    """A drop is read by its load and again by its result files (spectra/bulk/outcomes.py), which are written up to
    RESULTS_GIVEN_UP_AFTER (20 hours) after the load ends. It is tagged processed when the job ends, and S3's lifecycle
    counts IngestRetentionDays from its upload: at 1 day, a drop whose job waited its hour under its tenant's cap and
    loaded for the Data API's 24 hours was expired by the time its result files were written (results_mismatch)."""
    from spectra.bulk.reconcile import RESULTS_GIVEN_UP_AFTER
    from spectra.settings import Settings

    waits = timedelta(seconds=Settings.model_fields["pending_max_age_seconds"].default)  # then it fails not_started
    longest = waits + timedelta(hours=24) + RESULTS_GIVEN_UP_AFTER
    # S3 expires an object the given days after its creation, rounded up to the next midnight UTC: at least that long
    assert timedelta(days=int(parameters["IngestRetentionDays"]["MinValue"])) >= longest
    assert int(parameters["IngestRetentionDays"]["Default"]) >= int(parameters["IngestRetentionDays"]["MinValue"])


def _numbers_read_as_settings() -> list[tuple[str, str]]:
    """(variable, parameter): every function variable the template sets from a Number parameter."""
    body, _ = decode(str(TEMPLATE))
    functions = [r for r in body["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    every = [body["Globals"]["Function"]["Environment"]["Variables"]]
    every += [f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions]
    return sorted(
        {
            (variable, value["Ref"])
            for variables in every
            for variable, value in variables.items()
            if isinstance(value, dict) and body["Parameters"].get(value.get("Ref"), {}).get("Type") == "Number"
        }
    )


@pytest.mark.parametrize(("variable", "parameter"), _numbers_read_as_settings())
def test_a_fraction_a_number_parameter_takes_still_loads_the_settings(parameters, monkeypatch, variable, parameter):
    """CloudFormation's Number takes 2.5 and hands it to the functions as written ("2.5"), and these settings are
    whole numbers: TenantMaxRunningStatements or SessionKeepAliveSeconds at 2.5 (Globals) made every function fail to
    load its settings, and every request fail. A fraction is read as the whole number above it, which stays within the
    parameter's MinValue and MaxValue (whole numbers) and is never 0 (which pauses tenants, turns sessions off)."""
    from spectra.settings import Settings

    spec = parameters[parameter]
    low = int(spec.get("MinValue", spec["Default"]))
    monkeypatch.setenv("JOBS_TABLE", "jobs")
    monkeypatch.setenv("TENANTS_TABLE", "tenants")
    monkeypatch.setenv("REDSHIFT_CLUSTER_ID", "spectra")
    monkeypatch.setenv(variable, f"{low}.5")
    whole = Settings.model_fields[variable.lower()].annotation is int  # WebhookRetryFactor, say, is a float
    assert getattr(Settings(), variable.lower()) == (low + 1 if whole else low + 0.5)
    monkeypatch.setenv(variable, str(spec["Default"]))
    assert getattr(Settings(), variable.lower()) == int(spec["Default"])


def test_a_stack_deployed_with_any_tenant_wait_the_settings_take_can_be_updated(parameters):
    """TenantWaitSeconds' MaxValue was lowered from 900 to 199 (4f58078): a stack deployed with 200 to 900 had its
    next update refused, and nothing needed it, since retry_later keeps every wait under the reconciler's
    requeue_after_seconds whatever the value (test_share.py; found by the diff review). The template takes what the
    settings take, and its description says a wait never reaches the reconciler's 5 minutes."""
    spec = parameters["TenantWaitSeconds"]
    bounds = {m.__class__.__name__: m for m in Settings.model_fields["tenant_wait_seconds"].metadata}
    assert int(spec["MaxValue"]) == bounds["Le"].le == 900
    assert "ConstraintDescription" not in spec
    assert "never reaches the reconciler's 5 minutes" in " ".join(spec["Description"].split())


def test_a_deleted_tenants_subscriptions_outlast_the_longest_retry_schedule_the_template_allows(parameters):
    """delete_tenant keeps the tenant's subscriptions KEPT_AFTER_TENANT_DELETED (then the TTL removes them): past any
    job's record and every retry of its end's delivery, at the template's most attempts, each wait as long as the
    delivery code can make it (the flakiness audit found the first version comparing the constant with its own
    formula)."""
    from spectra import job_store
    from spectra.bulk import store as bulk_store
    from spectra.notify.store import KEPT_AFTER_TENANT_DELETED
    from spectra.settings import WEBHOOK_MAX_ATTEMPTS_MOST

    most = int(parameters["WebhookMaxAttempts"]["MaxValue"])
    assert most == WEBHOOK_MAX_ATTEMPTS_MOST
    settings = ports_with_notify().settings  # the template sets neither the retry cap nor the base
    # the longest retry schedule the delivery code can make: a factor the template allows (no MaxValue) that takes
    # every wait to the cap, each wait at the top of its jitter (worked out by the code, not the constant's formula)
    top = random.Random()
    top.uniform = lambda low, high: high  # type: ignore[method-assign]
    waits = sum(
        backoff_seconds(
            attempt,
            base=settings.webhook_retry_base_seconds,
            factor=1e6,
            cap=settings.webhook_retry_max_delay_seconds,
            rng=top,
        )
        for attempt in range(1, most)
    )
    assert max(job_store.JOB_TTL, bulk_store.JOB_TTL) + timedelta(seconds=waits) <= KEPT_AFTER_TENANT_DELETED


def test_a_query_callback_takes_the_last_retry_of_its_jobs_end_at_the_templates_most_attempts(parameters, monkeypatch):
    """A callback expired 7 days (callback_ttl_seconds) after its query was made, and SubscriptionStore.get reads it
    as gone from then (5b9875e). At WebhookMaxAttempts' most (50, 3 h retry cap) a job ending as late as it can
    (queued PENDING_MAX_AGE_SECONDS, its statement's 24 hours, its result kept 24 more) has its last retry on day 9:
    dropped, its callback gone (found by the diff review). That retry is delivered now."""
    from spectra.jobs import utcnow
    from spectra.notify import service
    from spectra.notify.models import callback_id
    from tests.unit import fakes
    from tests.unit.test_notify import ACME, sample_event

    most = int(parameters["WebhookMaxAttempts"]["MaxValue"])
    ports = ports_with_notify(webhook_max_attempts=most)
    job_id = sample_event().detail["job_id"]
    made = utcnow()
    service.register_callback(ports, service.new_callback("https://hooks.acme.example/cb"), caller=ACME, job_id=job_id)
    (delivery,) = fan_out(ports, sample_event()).deliveries
    assert delivery.subscription_id == callback_id(job_id)
    settings = ports.settings
    ended = made + timedelta(seconds=settings.pending_max_age_seconds) + timedelta(hours=48)
    last = ended + (most - 1) * timedelta(seconds=settings.webhook_retry_max_delay_seconds)
    monkeypatch.setattr(fakes, "utcnow", lambda: last)  # the store reads its expiry against this clock
    last_attempt = delivery.model_copy(update={"attempt": most, "not_before": last})
    assert deliver(ports, last_attempt, now=last) is Outcome.DELIVERED
