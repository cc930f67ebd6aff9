"""Handlers that keep per-request state on the module, as Powertools' resolvers and batch processors do.

If two invocations ever shared one copy of this module, the second would overwrite ``CURRENT`` while the first still
uses it, and the first would answer with the other's request.
"""

import json
import uuid

from handlers import meeting

ENVIRONMENT = uuid.uuid4().hex  # set once per copy of the module: tells environments apart
CURRENT: dict = {}


def remember(event, context):
    """Keep the request on the module, wait until ``event["parties"]`` invocations all hold theirs, then answer."""
    CURRENT["request"] = event["request"]
    meeting.barrier(event["group"], event["parties"]).wait()
    return {"request": event["request"], "seen": CURRENT["request"], "environment": ENVIRONMENT}


def hold(event, context):
    """Enter, then wait for the test to open the group's gate."""
    CURRENT["request"] = event["request"]
    meeting.enter(event["group"])
    meeting.gate(event["group"]).wait(timeout=20)
    return {"request": event["request"], "seen": CURRENT["request"], "environment": ENVIRONMENT}


def remember_batch(event, context):
    """An SQS consumer: each message names a group of ``parties`` batches that must all be in flight at once."""
    body = json.loads(event["Records"][0]["body"])
    return remember(body, context) and {"batchItemFailures": []}
