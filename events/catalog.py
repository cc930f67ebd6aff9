"""Which model each sample and schema belongs to: one table, read by the schema writer and the tests."""

from __future__ import annotations

from pathlib import Path

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel

from events.models import (
    BulkJobEventDetail,
    BulkJobQueuedMessage,
    BulkResultsRequested,
    JobEventDetail,
    JobQueuedMessage,
    S3Notification,
    StatementStatusChangeEvent,
    SubscriptionDisabledDetail,
    WebhookDelivery,
)

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"
SCHEMAS = HERE / "schemas"


class JobEvent(EventBridgeModel):
    """A project event as subscribers receive it: the EventBridge envelope around :class:`JobEventDetail`."""

    detail: JobEventDetail


class BulkJobEvent(EventBridgeModel):
    """A bulk job's end as subscribers receive it: the EventBridge envelope around :class:`BulkJobEventDetail`."""

    detail: BulkJobEventDetail


class SubscriptionDisabledEvent(EventBridgeModel):
    """A webhook subscription was disabled, as subscribers receive it."""

    detail: SubscriptionDisabledDetail


#: sample file → the model that must parse it
SAMPLE_MODELS: dict[str, type[BaseModel]] = {
    "redshift_statement_status_change.json": StatementStatusChangeEvent,
    "redshift_statement_status_change_failed.json": StatementStatusChangeEvent,
    "job_queued_message.json": JobQueuedMessage,
    "job_completed_event.json": JobEvent,
    "job_failed_event.json": JobEvent,
    "job_cancelled_event.json": JobEvent,
    "bulk_job_queued_message.json": BulkJobQueuedMessage,
    "bulk_results_requested.json": BulkResultsRequested,
    "bulk_job_completed_event.json": BulkJobEvent,
    "bulk_job_failed_event.json": BulkJobEvent,
    "bulk_job_aborted_event.json": BulkJobEvent,
    "subscription_disabled_event.json": SubscriptionDisabledEvent,
    "webhook_delivery_message.json": WebhookDelivery,
    "s3_object_created_notification.json": S3Notification,
}

#: schema file → model; the file carries the EventBridge registry hints (x-amazon-events-*) where it is an event
SCHEMA_MODELS: dict[str, tuple[type[BaseModel], dict[str, str]]] = {
    "job_queued_message.v1.json": (JobQueuedMessage, {}),
    "job_event_detail.v1.json": (
        JobEventDetail,
        {
            "x-amazon-events-source": "spectra",
            "x-amazon-events-detail-type": "Job Completed | Job Failed | Job Cancelled",
        },
    ),
    "bulk_job_queued_message.v1.json": (BulkJobQueuedMessage, {}),
    "bulk_results_requested.v1.json": (BulkResultsRequested, {}),
    "bulk_job_event_detail.v1.json": (
        BulkJobEventDetail,
        {
            "x-amazon-events-source": "spectra",
            "x-amazon-events-detail-type": "Bulk Job Completed | Bulk Job Failed | Bulk Job Aborted",
        },
    ),
    "subscription_disabled_detail.v1.json": (
        SubscriptionDisabledDetail,
        {"x-amazon-events-source": "spectra", "x-amazon-events-detail-type": "Subscription Disabled"},
    ),
    "webhook_delivery_message.v1.json": (WebhookDelivery, {}),
}

#: The EventBridge schema registry in template.yaml: schema name → the committed schema file it holds. Every schema
#: of an event (one with ``x-amazon-events-source``) is there; queue messages are internal and are not.
REGISTRY_SCHEMAS: dict[str, str] = {
    "spectra@JobEvent": "job_event_detail.v1.json",
    "spectra@BulkJobEvent": "bulk_job_event_detail.v1.json",
    "spectra@SubscriptionDisabled": "subscription_disabled_detail.v1.json",
}
