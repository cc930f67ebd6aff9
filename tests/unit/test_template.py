"""template.yaml and the code cannot drift: handlers import, settings match, every queue hop has a DLQ and an alarm."""

import importlib
from pathlib import Path

import pytest
from cfnlint.decode import decode

from spectra.settings import Settings

pytestmark = pytest.mark.unit

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    body, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return body


def resources_of(template, kind):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_every_handler_imports(template):
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        module, _, attribute = function["Properties"]["Handler"].rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), name


def test_every_global_variable_is_a_setting_or_powertools(template):
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    fields = {name.upper() for name in Settings.model_fields}
    unknown = {v for v in variables if v not in fields and not v.startswith("POWERTOOLS_")}
    assert not unknown, f"template sets variables no setting reads: {unknown}"
    required = {name.upper() for name, field in Settings.model_fields.items() if field.is_required()}
    assert required <= set(variables), f"settings without a value in the template: {required - set(variables)}"


def test_sqs_consumers_report_partial_failures_and_their_queues_have_dlqs_and_alarms(template):
    queues = resources_of(template, "AWS::SQS::Queue")
    alarms = resources_of(template, "AWS::CloudWatch::Alarm").values()
    alarmed = {
        d["Value"]["Fn::GetAtt"][0]
        for a in alarms
        for d in a["Properties"].get("Dimensions", [])
        if isinstance(d["Value"], dict) and "Fn::GetAtt" in d["Value"]
    }
    consumed = 0
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] != "SQS":
                continue
            consumed += 1
            assert event["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"], name
            queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
            redrive = queues[queue]["Properties"]["RedrivePolicy"]
            dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert dlq in queues and redrive["maxReceiveCount"] >= 3, queue
            assert dlq in alarmed, f"{dlq} has no alarm"
            timeout = function["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"])
            assert queues[queue]["Properties"]["VisibilityTimeout"] >= 6 * timeout, f"{queue}: AWS asks for 6x"
    assert consumed >= 2


def test_event_rules_target_queues_only(template):
    # EventBridge → SQS → Lambda everywhere: batching, retries, a DLQ per hop, and the same wiring on moto.
    for name, rule in resources_of(template, "AWS::Events::Rule").items():
        for target in rule["Properties"].get("Targets", []):
            assert target["Arn"]["Fn::GetAtt"][0] in resources_of(template, "AWS::SQS::Queue"), name


def test_no_function_gets_wildcard_write_access(template):
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        for policy in function["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                if not isinstance(statement, dict) or "Action" not in statement:
                    continue  # conditional statements (Fn::If) are checked by cfn-lint
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert not any(a.endswith(":*") or a == "*" for a in actions), (name, actions)


def test_the_executor_knows_the_jobs_queues_last_delivery(template):
    redrive = template["Resources"]["JobsQueue"]["Properties"]["RedrivePolicy"]
    assert Settings.model_fields["executor_max_attempts"].default == redrive["maxReceiveCount"]


def test_the_authorizer_cache_is_a_parameter_of_at_most_60_seconds(template):
    """A revoked key or a deactivated tenant must be refused within 60 s: no authorizer may cache its answer longer."""
    parameter = template["Parameters"]["AuthorizerCacheSeconds"]
    assert int(parameter["MaxValue"]) <= 60 and int(parameter["Default"]) <= 60
    apis = resources_of(template, "AWS::Serverless::Api").values()
    authorizers = [a for api in apis for a in api["Properties"]["Auth"]["Authorizers"].values()]
    assert authorizers
    for authorizer in authorizers:
        assert authorizer["Identity"]["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheSeconds"}


def test_the_executor_knows_the_tenant_prefixes_iam_grants(template):
    """The prefixes the executor checks in code are the template's, the ones its IAM policy is written with."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["TENANT_DB_USER_PREFIX"] == {"Ref": "TenantDbUserPrefix"}
    assert variables["TENANT_SECRET_PREFIX"] == {"Ref": "TenantSecretPrefix"}
