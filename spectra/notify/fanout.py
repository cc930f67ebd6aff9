"""One event of the project's bus → one delivery per matching subscription of its tenant, and the SNS topic.

Safe to repeat: a redelivered event queues deliveries with the same ``webhook-id`` (receivers deduplicate) and
publishes to SNS again (SNS is at-least-once anyway). Webhook deliveries are queued before the SNS publish, so a
failed publish retries the whole event and loses nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from events import JOB_EVENT_DETAIL_TYPES, TERMINAL_JOB_EVENT_TYPES, ProjectEvent, WebhookDelivery
from spectra.notify.models import Subscription, callback_id, delivery_for
from spectra.notify.service import notify_ports
from spectra.ports import Ports
from spectra.tenant_cache import tenant_record
from spectra.tenants import same_generation

logger = logging.getLogger(__name__)


#: How long this process trusts what it read of a tenant's generation (spectra/tenant_cache.py).
GENERATION_CACHE_SECONDS = 30.0


def _of_current_tenant(ports: Ports, tenant_id: str, subscriptions: list[Subscription]) -> list[Subscription]:
    """The subscriptions made by the tenant as it is now: a tenant deleted and created again under the same id is
    another tenant, and its predecessor's subscriptions get none of its events (within GENERATION_CACHE_SECONDS of
    the re-creation, for a process that read the tenant just before). A tenant that is gone keeps its own."""
    if not any(s.tenant_generation for s in subscriptions):
        return subscriptions
    tenant = tenant_record(ports.tenants, tenant_id, max_age=GENERATION_CACHE_SECONDS)
    current = tenant.generation if tenant is not None else None
    return [s for s in subscriptions if same_generation(current, s.tenant_generation)]


def _of_event_generation(ports: Ports, event: ProjectEvent, subscriptions: list[Subscription]) -> list[Subscription]:
    """The subscriptions that hear of ``event``: those of the tenant generation that made its job (or subscription),
    named in the event's ``tenant_generation``. A job that outlives its tenant (queued or running when the tenant was
    deleted, and ending once it was created again) is the predecessor's, and its event reaches none of the
    successor's subscriptions; a predecessor's subscription still hears of its own jobs, as a tenant that is gone
    keeps its own. An event without a generation (published before events carried it, or of a job made before
    generations existed) goes to the tenant's current generation's (:func:`_of_current_tenant`)."""
    generation = event.detail.get("tenant_generation")
    if not isinstance(generation, str) or not generation:
        return _of_current_tenant(ports, event.detail["tenant_id"], subscriptions)
    return [s for s in subscriptions if same_generation(generation, s.tenant_generation)]


@dataclass(frozen=True)
class FanOut:
    deliveries: list[WebhookDelivery]
    published_to_topic: bool


def fan_out(ports: Ports, event: ProjectEvent) -> FanOut:
    notify = notify_ports(ports)
    tenant_id = event.detail.get("tenant_id")
    deliveries: list[WebhookDelivery] = []
    if isinstance(tenant_id, str) and tenant_id:
        subscriptions = _of_event_generation(ports, event, notify.subscriptions.webhooks_for_tenant(tenant_id))
        job_id = event.detail.get("job_id")
        if event.detail_type in JOB_EVENT_DETAIL_TYPES.values() and isinstance(job_id, str):
            callback = notify.subscriptions.get(tenant_id, callback_id(job_id))
            if callback is not None:
                subscriptions.append(callback)
        deliveries = [delivery_for(s, event) for s in subscriptions if s.accepts(event.detail_type, event.detail)]
    else:
        logger.warning("event %s (%s) names no tenant; no webhooks", event.id, event.detail_type)
    if deliveries:
        if notify.deliveries is None:
            raise RuntimeError("this function has no delivery queue (WEBHOOK_DELIVERY_QUEUE_URL is not set)")
        notify.deliveries.send(deliveries)
    published = event.detail_type in TERMINAL_JOB_EVENT_TYPES and notify.topic is not None
    if published:
        notify.topic.publish(event)
    return FanOut(deliveries=deliveries, published_to_topic=published)
