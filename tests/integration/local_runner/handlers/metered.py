"""A handler whose Powertools metric set is read after all concurrent invocations have added their metric.

Powertools' ``Metrics`` keeps its metrics in dicts on the class; if the runner let those be shared, each invocation
would see (and its flush would print, then clear) the others' metrics too.
"""

from aws_lambda_powertools import Metrics
from handlers import meeting

metrics = Metrics(namespace="RunnerTest", service="runner-test")


@metrics.log_metrics
def handle(event, context):
    metrics.add_metric(name=f"Item{event['item']}", unit="Count", value=1)
    meeting.barrier(event["group"], event["n"]).wait()
    return sorted(metrics.metric_set)
