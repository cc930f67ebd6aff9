"""The contracts: one versioned pydantic model per queue message and event, with a real sample and a JSON Schema.

Producers and consumers import the same model, so a change to a message is a change in one place. Every model
carries ``version``; a consumer refuses a version it does not know instead of guessing.
"""

from events.models import (
    EVENT_SOURCE,
    JOB_EVENT_DETAIL_TYPES,
    ErrorInfo,
    JobEventDetail,
    JobQueuedMessage,
    JobStatus,
    ResultFormat,
    StatementState,
    StatementStatusChange,
    StatementStatusChangeEvent,
)

__all__ = [
    "EVENT_SOURCE",
    "JOB_EVENT_DETAIL_TYPES",
    "ErrorInfo",
    "JobEventDetail",
    "JobQueuedMessage",
    "JobStatus",
    "ResultFormat",
    "StatementState",
    "StatementStatusChange",
    "StatementStatusChangeEvent",
]
