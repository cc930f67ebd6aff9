"""Handlers that report what they received, so tests can compare it with what Lambda would pass."""

import os

from aws_lambda_powertools import Logger

logger = Logger(service="local-runner-test")


def echo(event, context):
    """Return the event and the context's attributes (direct invokes and schedules)."""
    return {
        "event": event,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def environment(event, context):
    """The values of the variables the event names, as the function sees them."""
    return {name: os.environ.get(name) for name in event["names"]}


@logger.inject_lambda_context(log_event=False)
def powertools(event, context):
    """Powertools reads the context's attributes; this fails if the runner's context lacks one."""
    logger.info("invoked")
    return {
        "cold_start": logger.get_current_keys().get("cold_start"),
        "name": logger.get_current_keys()["function_name"],
    }


def sleepy(event, context):
    """Sleep ``event["sleep"]`` seconds (past the function's Timeout, in the overrun tests)."""
    import time

    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}


def raises_timeout_error(event, context):
    """A handler's own TimeoutError (a socket read timing out is one): its error, not Lambda's timeout."""
    raise TimeoutError("the socket read timed out")
