"""Which model each sample and schema belongs to: one table, read by the schema writer and the tests."""

from __future__ import annotations

from pathlib import Path

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel

from events.models import JobEventDetail, JobQueuedMessage, StatementStatusChangeEvent

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"
SCHEMAS = HERE / "schemas"


class JobEvent(EventBridgeModel):
    """A project event as subscribers receive it: the EventBridge envelope around :class:`JobEventDetail`."""

    detail: JobEventDetail


#: sample file → the model that must parse it
SAMPLE_MODELS: dict[str, type[BaseModel]] = {
    "redshift_statement_status_change.json": StatementStatusChangeEvent,
    "redshift_statement_status_change_failed.json": StatementStatusChangeEvent,
    "job_queued_message.json": JobQueuedMessage,
    "job_completed_event.json": JobEvent,
    "job_failed_event.json": JobEvent,
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
}
