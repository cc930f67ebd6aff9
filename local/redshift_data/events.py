"""Completion events: "Redshift Data Statement Status Change" on the default EventBridge bus.

The event has the shape AWS documents ("Monitoring events for the Amazon Redshift Data API in Amazon EventBridge"):
source ``aws.redshift-data``, the cluster or workgroup ARN as resource, and a detail of principal, statementName,
statementId, redshiftQueryId, state, rows and expireAt. AWS delivers these best effort; ``drop_rate`` drops a
fraction on purpose so tests can prove nothing depends on every event arriving. A failed PutEvents is logged and
never affects the statement.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

from .statements import Statement

log = logging.getLogger(__name__)

SOURCE = "aws.redshift-data"
DETAIL_TYPE = "Redshift Data Statement Status Change"


class EventPublisher:
    def __init__(self, events_client: Any, *, region: str, account_id: str, drop_rate: float) -> None:
        self._client = events_client
        self._region = region
        self._account_id = account_id
        #: fraction of events dropped on purpose; tests may change it while the emulator runs
        self.drop_rate = drop_rate
        self.dropped: list[str] = []  # the statement names (or ids) whose events were dropped on purpose
        self._random = random.Random()

    def entry(self, statement: Statement) -> dict[str, Any]:
        ident = statement.identity
        if ident.workgroup_name and ident.workgroup_name.startswith("arn:"):  # named by its ARN: that ARN
            resource = ident.workgroup_name
        elif ident.workgroup_name:
            resource = f"arn:aws:redshift-serverless:{self._region}:{self._account_id}:workgroup/{ident.workgroup_name}"
        else:
            resource = f"arn:aws:redshift:{self._region}:{self._account_id}:cluster:{ident.cluster_identifier}"
        detail = {
            "principal": statement.caller,
            "statementName": statement.statement_name or "",
            "statementId": statement.id,
            "redshiftQueryId": statement.redshift_query_id,
            "state": statement.status,
            "rows": statement.result_rows,
            "expireAt": int(statement.expires_at or 0),
        }
        return {"Source": SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail), "Resources": [resource]}

    def publish(self, statement: Statement) -> None:
        if self.drop_rate > 0 and self._random.random() < self.drop_rate:
            log.info(
                "dropping the completion event of %s on purpose (event_drop_rate=%s)", statement.id, self.drop_rate
            )
            self.dropped.append(statement.statement_name or statement.id)
            return
        try:
            response = self._client.put_events(Entries=[self.entry(statement)])
            if response.get("FailedEntryCount"):
                log.warning("EventBridge rejected the completion event of %s: %s", statement.id, response["Entries"])
        except Exception:
            log.exception("publishing the completion event of %s failed", statement.id)
