"""Template loading and intrinsic resolution, checked through what the functions and resources end up with."""

import json

import pytest

from local.runner import EnvironmentConflict, Template, TemplateError
from local.runner.template import merge_globals

from .conftest import TEMPLATES

pytestmark = pytest.mark.integration


def test_intrinsics_globals_and_conditions_resolve_like_cloudformation(start_stack, local_aws, caplog):
    stack = start_stack("intrinsics")
    assert "AWS::Unknown::Thing" in caplog.text  # unknown types are a warning, not a crash
    config = stack.function("Echo").config
    env = config.environment
    name = stack.stack_name

    assert env["STACK"] == name
    assert env["SHARED"] == "from-globals"
    assert env["OVERRIDDEN"] == "own"  # the function's own variable beats Globals
    assert env["JOBS_URL"] == stack.physical_id("Jobs")
    assert env["JOBS_URL"].endswith(f"/{name}-jobs")
    assert env["JOBS_ARN"] == f"arn:aws:sqs:{local_aws.region}:123456789012:{name}-jobs"
    assert env["JOBS_NAME"] == f"{name}-jobs"
    assert env["MODE"] == "development"
    assert "OPTIONAL" not in env  # AWS::NoValue removes the variable
    assert env["SECOND_ZONE"] == "b"
    assert env["JOINED"] == "x+y+z"
    assert env["LITERAL"] == f"${{NotAVariable}}-{local_aws.region}-123456789012-aws"
    assert env["ALWAYS"] == "yes" and env["NEVER"] == "no"
    assert env["FLAG"] == "true"
    assert env["ROLE"].startswith("arn:aws:iam:")  # a skipped resource still resolves to a placeholder

    assert config.timeout_seconds == 7 and config.runtime == "python3.12"
    assert config.memory_mb == 256  # FindInMap with the dev default
    assert config.name.startswith(f"{name}-Echo-")
    assert "ProdOnlyBucket" not in stack.resources  # its condition is false
    assert stack.resources["Mystery"].status == "skipped"
    assert stack.outputs() == {"JobsUrl": env["JOBS_URL"], "EchoArn": stack.attribute("Echo", "Arn")}


def test_the_function_environment_is_exported_while_the_stack_runs(start_stack, local_aws):
    import os

    before = os.environ.get("AWS_ENDPOINT_URL_REDSHIFT_DATA")  # another stack of this test run may have set it
    stack = start_stack("intrinsics", extra_env={"AWS_ENDPOINT_URL_REDSHIFT_DATA": "http://127.0.0.1:1"})
    seen = stack.invoke("Echo", {"hello": "world"})
    assert os.environ["JOBS_URL"] == stack.physical_id("Jobs")
    assert os.environ["AWS_ENDPOINT_URL"] == local_aws.endpoint_url
    assert os.environ["AWS_ENDPOINT_URL_REDSHIFT_DATA"] == "http://127.0.0.1:1"
    assert seen["event"] == {"hello": "world"}
    assert seen["function_name"] == stack.physical_id("Echo")
    assert seen["invoked_function_arn"] == stack.attribute("Echo", "Arn")
    assert seen["memory_limit_in_mb"] == 256
    assert 0 < seen["remaining_ms"] <= 7000
    assert seen["log_group_name"] == f"/aws/lambda/{stack.physical_id('Echo')}"
    assert stack.invocations("Echo") == 1

    stack.stop()
    assert "JOBS_URL" not in os.environ  # stop puts the environment back
    assert os.environ.get("AWS_ENDPOINT_URL_REDSHIFT_DATA") == before


def test_parameter_overrides_flip_conditions_and_mappings(start_stack):
    stack = start_stack("intrinsics", parameter_overrides={"Environment": "prod", "Zones": "x,y"})
    env = stack.function("Echo").config.environment
    assert env["MODE"] == "production" and env["OPTIONAL"] == "set" and env["SECOND_ZONE"] == "y"
    assert stack.function("Echo").config.memory_mb == 1024
    assert stack.resources["ProdOnlyBucket"].status == "created"


def test_queue_redrive_policy_is_created_from_a_getatt(start_stack, local_aws):
    stack = start_stack("intrinsics")
    attributes = local_aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.physical_id("Jobs"), AttributeNames=["All"]
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "45"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 3
    assert redrive["deadLetterTargetArn"] == stack.attribute("DeadLetters", "Arn")


def test_two_functions_with_different_values_for_one_variable_are_refused(local_aws, unique_name):
    from local.runner import LocalStack

    with pytest.raises(EnvironmentConflict, match="TABLE"):
        LocalStack.start(TEMPLATES / "conflict.yaml", local_aws, stack_name=unique_name)


def test_unsupported_intrinsics_and_bad_parameters_are_clear_errors(tmp_path):
    with pytest.raises(TemplateError, match="ImportValue"):
        template = Template.load(TEMPLATES / "import_value.yaml")
        template.resolver.resolve(template.resources["Queue"]["Properties"])
    with pytest.raises(TemplateError, match="not one of"):
        Template.load(TEMPLATES / "intrinsics.yaml", parameter_overrides={"Environment": "staging"})
    with pytest.raises(TemplateError, match="undeclared"):
        Template.load(TEMPLATES / "intrinsics.yaml", parameter_overrides={"Nope": "1"})
    for value, error in (("61", "above its MaxValue 60"), ("-1", "below its MinValue 0"), ("soon", "not a number")):
        with pytest.raises(TemplateError, match=error):
            Template.load(TEMPLATES / "intrinsics.yaml", parameter_overrides={"CacheSeconds": value})
    assert (
        Template.load(TEMPLATES / "intrinsics.yaml", parameter_overrides={"CacheSeconds": 60}).parameters[
            "CacheSeconds"
        ]
        == "60"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources: [unclosed\n")
    with pytest.raises(TemplateError, match="cannot parse"):
        Template.load(broken)


def test_globals_merge_maps_append_lists_and_let_the_resource_win():
    merged = merge_globals(
        {"Timeout": 3, "Environment": {"Variables": {"A": "1", "B": "1"}}, "Layers": ["g"], "Tags": {"Ref": "X"}},
        {"Timeout": 9, "Environment": {"Variables": {"B": "2"}}, "Layers": ["own"], "Tags": {"k": "v"}},
    )
    assert merged == {
        "Timeout": 9,
        "Environment": {"Variables": {"A": "1", "B": "2"}},
        "Layers": ["g", "own"],
        "Tags": {"k": "v"},
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"JwtTenantClaim": ""},  # MinLength (found by a diff review: the runner checked MaxLength only)
        {"JwksUrl": "http://idp.example/jwks.json"},  # AllowedPattern
        {"RedshiftClusterId": "c" * 64},  # MaxLength
    ],
)
def test_the_runner_refuses_parameters_cloudformation_refuses(overrides):
    from local.runner.template import _parameter_values, load_template_file

    declared = load_template_file("template.yaml")["Parameters"]
    with pytest.raises(TemplateError):
        _parameter_values(declared, {"RedshiftClusterId": "c", **overrides})
    assert _parameter_values(declared, {"RedshiftClusterId": "c"})["JwtTenantClaim"] == "tenant_id"
