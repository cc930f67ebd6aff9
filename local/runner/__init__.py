"""The local runner: a SAM template's functions run in this process against moto.

``LocalStack.start(template, aws)`` reads the template (``template.py``), creates its queues, buckets, tables, buses
and rules in moto (``provision.py``), imports its functions (``functions.py``) and wires their events: SQS pollers
(``sqs_poller.py``), schedules (``schedules.py``) and an HTTP server playing API Gateway with Lambda authorizers
(``api_gateway.py``, ``authorizers.py``). It is a development and test tool; nothing here is deployed.
"""

from local.runner.functions import EnvironmentConflict, Invocation, LambdaContext, LocalFunction
from local.runner.stack import LocalStack
from local.runner.template import DEFAULT_STACK_NAME, PhysicalResource, Template, TemplateError

__all__ = [
    "DEFAULT_STACK_NAME",
    "EnvironmentConflict",
    "Invocation",
    "LambdaContext",
    "LocalFunction",
    "LocalStack",
    "PhysicalResource",
    "Template",
    "TemplateError",
]
