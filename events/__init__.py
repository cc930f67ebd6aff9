"""The contracts: one versioned pydantic model per queue message and event, with a real sample and a JSON Schema.

Producers and consumers import the same model, so a change to a message is a change in one place. Every model
carries ``version``; a consumer refuses a version it does not know instead of guessing.
"""

from events.models import (
    BULK_EVENT_DETAIL_TYPES,
    EVENT_SOURCE,
    JOB_EVENT_DETAIL_TYPES,
    SUBSCRIBABLE_EVENT_TYPES,
    SUBSCRIPTION_DISABLED,
    TERMINAL_JOB_EVENT_TYPES,
    BulkJobEventDetail,
    BulkJobQueuedMessage,
    BulkResultsRequested,
    Delivery,
    ErrorInfo,
    JobEventDetail,
    JobQueuedMessage,
    JobStatus,
    ProjectEvent,
    ResultFormat,
    S3EventRecord,
    S3Notification,
    StatementState,
    StatementStatusChange,
    StatementStatusChangeEvent,
    SubscriptionDisabledDetail,
    WebhookDelivery,
    parse_job_message,
)

__all__ = [
    "BULK_EVENT_DETAIL_TYPES",
    "EVENT_SOURCE",
    "JOB_EVENT_DETAIL_TYPES",
    "SUBSCRIBABLE_EVENT_TYPES",
    "SUBSCRIPTION_DISABLED",
    "TERMINAL_JOB_EVENT_TYPES",
    "BulkJobEventDetail",
    "BulkJobQueuedMessage",
    "BulkResultsRequested",
    "Delivery",
    "ErrorInfo",
    "JobEventDetail",
    "JobQueuedMessage",
    "JobStatus",
    "ProjectEvent",
    "ResultFormat",
    "S3EventRecord",
    "S3Notification",
    "StatementState",
    "StatementStatusChange",
    "StatementStatusChangeEvent",
    "SubscriptionDisabledDetail",
    "WebhookDelivery",
    "parse_job_message",
]
