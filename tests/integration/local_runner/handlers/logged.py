"""A handler whose Powertools Logger keys are read after all concurrent invocations have set theirs.

A service's Loggers share one formatter, which holds the keys of every line (the Lambda context's and appended
ones); if the runner let that be shared, each invocation would read the last one's request id and item.
"""

from aws_lambda_powertools import Logger
from handlers import meeting

logger = Logger(service="runner-test")


@logger.inject_lambda_context(clear_state=True)
def handle(event, context):
    logger.append_keys(item=event["item"])
    meeting.barrier(event["group"], event["n"]).wait()
    keys = logger.get_current_keys()
    return {"request_id": keys["function_request_id"], "item": keys["item"], "own_request_id": context.aws_request_id}
