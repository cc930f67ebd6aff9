"""The runner's pure rules: schedule intervals, IAM policy evaluation for authorizers, route specificity."""

import pytest

from local.runner.authorizers import policy_allows
from local.runner.schedules import interval_seconds
from local.runner.template import TemplateError

pytestmark = pytest.mark.integration

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/GET/jobs/42"


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("cron(0/15 * * * ? *)", 900),
        ("cron(* * * * ? *)", 60),
        ("cron(0 */2 * * ? *)", 7200),
        ("cron(30 * * * ? *)", 3600),
        ("cron(0 3 * * ? *)", 86400),
    ],
)
def test_schedule_intervals(expression, seconds):
    assert interval_seconds(expression) == seconds


def test_bad_schedule_expressions_are_template_errors():
    with pytest.raises(TemplateError):
        interval_seconds("every now and then")
    with pytest.raises(TemplateError):
        interval_seconds("cron(0 3 * *)")


def _policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _statement(effect, resource, action="execute-api:Invoke"):
    return {"Effect": effect, "Action": action, "Resource": resource}


@pytest.mark.parametrize(
    ("policy", "allowed"),
    [
        (_policy(_statement("Allow", ARN)), True),
        (_policy(_statement("Allow", "arn:aws:execute-api:us-east-1:123456789012:abc123/*")), True),
        (_policy(_statement("Allow", "arn:aws:execute-api:*:*:abc123/v1/GET/jobs/*")), True),
        (_policy(_statement("Allow", "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/POST/*")), False),
        (_policy(_statement("Allow", "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/GET/jobs/4?")), True),
        (_policy(_statement("Allow", [ARN]), _statement("Deny", "*")), False),  # explicit deny wins
        (_policy(_statement("Allow", ARN, action="execute-api:*")), True),
        (_policy(_statement("Allow", ARN, action="s3:GetObject")), False),
        (_policy(), False),  # no statement: implicit deny
        ({"Statement": _statement("Allow", "*")}, True),  # a single statement need not be a list
    ],
)
def test_policy_evaluation(policy, allowed):
    assert policy_allows(policy, ARN) is allowed
