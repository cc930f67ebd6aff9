"""SAM's managed policies stay scoped: AWS's own transform (aws-sam-translator, offline) attaches managed policies to
every function's role on "*" (AWSLambdaBasicExecutionRole: create log groups and write to any; for an SQS event,
AWSLambdaSQSQueueExecutionRole: receive and delete on every queue of the account). The inline policies must deny
each of those actions beyond the function's own log group and queue, or a function could read and delete another
stage's messages (tests/e2e/test_iam_policies.py checks the inline Allow statements, which are not where these come
from)."""

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SAM_PYTHON = ROOT / ".sam-venv" / "bin" / "python"

#: what each managed policy grants on "*" (AWS's documents of them); X-Ray's write-only access has no resource to scope
MANAGED_ACTIONS = {
    "AWSLambdaBasicExecutionRole": {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"},
    "AWSLambdaSQSQueueExecutionRole": {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    },
    "AWSXrayWriteOnlyAccess": set(),
}

_TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

text = open(sys.argv[1]).read()
template = yaml_parse(text.replace("CodeUri: .", "CodeUri: s3://b/k").replace("ContentUri: .", "ContentUri: s3://b/k"))


class Policies:  # the managed policies' ARNs, as the transform looks them up (offline: by name)
    def load(self):
        role = lambda name: "service-role/" if name.startswith("AWSLambda") else ""
        return {name: f"arn:aws:iam::aws:policy/{role(name)}{name}" for name in json.loads(sys.argv[2])}


json.dump(transform(template, {}, Policies()), sys.stdout, default=str)
"""


@pytest.fixture(scope="module")
def translated() -> dict:
    assert SAM_PYTHON.exists(), "aws-sam-cli lives in its own venv (.sam-venv); `make install` creates it"
    result = subprocess.run(
        [str(SAM_PYTHON), "-c", _TRANSLATE, str(ROOT / "template.yaml"), json.dumps(sorted(MANAGED_ACTIONS))],
        capture_output=True,
        text=True,
        timeout=180,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)["Resources"]


def _denied(role: dict) -> dict[str, list]:
    """Each action the role's inline policies deny, and the NotResource it is denied beyond."""
    denied: dict[str, list] = {}
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement.get("Effect") == "Deny":  # (an Fn::If of Allows has none)
                assert "NotResource" in statement and "Resource" not in statement, statement
                scope = statement["NotResource"]
                for action in statement["Action"]:
                    denied[action] = scope if isinstance(scope, list) else [scope]
    return denied


def test_every_action_sams_managed_policies_grant_on_star_is_left_to_the_functions_own_resources(translated):
    functions = {name: r for name, r in translated.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) >= 9
    for name, function in functions.items():
        role = translated[function["Properties"]["Role"]["Fn::GetAtt"][0]]
        managed = {arn.rsplit("/", 1)[-1] for arn in role["Properties"]["ManagedPolicyArns"]}
        assert managed <= set(MANAGED_ACTIONS), f"{name}: a managed policy this test does not know: {managed}"
        own_group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        own_queues = [
            mapping["Properties"]["EventSourceArn"]
            for mapping in translated.values()
            if mapping["Type"] == "AWS::Lambda::EventSourceMapping"
            and mapping["Properties"]["FunctionName"] == {"Ref": name}
        ]
        assert ("AWSLambdaSQSQueueExecutionRole" in managed) == bool(own_queues), name
        denied = _denied(role)
        for action in set().union(*(MANAGED_ACTIONS[m] for m in managed)):
            assert action in denied, f"{name}: {action} is granted on '*' by a managed policy and never scoped"
            if action.startswith("sqs:"):
                assert denied[action] == own_queues, f"{name}: {action} beyond {denied[action]}, not its queue"
            else:
                assert {"Fn::GetAtt": [own_group, "Arn"]} in denied[action], f"{name}: {action} beyond its log group"
                assert all(own_group in json.dumps(scope) for scope in denied[action]), f"{name}: {denied[action]}"
