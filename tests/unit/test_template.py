"""template.yaml and the code cannot drift: handlers import, settings match, every queue hop has a DLQ and an alarm."""

import importlib
import json
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode

from producers.api.app import ANSWER_HEADERS
from spectra import deadline
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
    """A variable the template sets (for every function, or on one: its queue, topic or table) that no setting reads
    is ignored: the function stays on the default (an empty name: that role switched off) whatever the stack was
    given."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    fields = {name.upper() for name in Settings.model_fields}
    unknown = {v for v in variables if v not in fields and not v.startswith("POWERTOOLS_")}
    assert not unknown, f"template sets variables no setting reads: {unknown}"
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        own = function["Properties"].get("Environment", {}).get("Variables", {})
        unknown = {v for v in own if v not in fields and not v.startswith("POWERTOOLS_")}
        assert not unknown, f"template sets variables on {name} no setting reads: {unknown}"
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


def _named(resource) -> set[str]:
    """The logical ids a policy statement's Resource names: ``X`` for ``!GetAtt X.Arn``, ``X/*`` for its objects."""
    names = set()
    for entry in resource if isinstance(resource, list) else [resource]:
        if isinstance(entry, dict) and "Fn::GetAtt" in entry:
            names.add(entry["Fn::GetAtt"][0])
        elif isinstance(entry, dict) and "Fn::Sub" in entry and isinstance(entry["Fn::Sub"], str):
            names |= {f"{bucket}/{rest}" for bucket, rest in re.findall(r"\$\{(\w+)\.Arn\}/(.*)", entry["Fn::Sub"])}
    return names


def test_a_function_that_reads_a_bucket_may_list_it(template):
    """On AWS a read of a missing key answers 404 only to a role that may list the bucket, 403 AccessDenied to the
    others; the code turns a 404 into NotFound (a batch or an outcome file deleted: the job fails or its result files
    are given up), and a 403 would be retried into the dead-letter queue instead."""
    missing = []
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        policies = [p for p in function["Properties"].get("Policies", []) if isinstance(p, dict) and "Statement" in p]
        statements = [s for p in policies for s in p["Statement"] if "Action" in s and s["Effect"] == "Allow"]
        reads, lists = set(), set()
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            named = _named(statement["Resource"])
            if "s3:GetObject" in actions:
                reads |= {n.split("/")[0] for n in named if "/" in n}
            if "s3:ListBucket" in actions:
                lists |= named
        missing += [f"{name}: {bucket}" for bucket in sorted(reads - lists)]
    assert not missing, f"reads without s3:ListBucket (a missing key is a 403): {missing}"


def test_a_bulk_results_runs_lease_outlives_the_run(template):
    """A lease shorter than the function may run would let a second writer in beside a live one."""
    from spectra.bulk.lifecycle import RESULTS_WRITER_LEASE

    timeout = template["Resources"]["BulkResultsFunction"]["Properties"]["Timeout"]
    assert RESULTS_WRITER_LEASE.total_seconds() > timeout


def test_a_disable_is_left_to_its_own_attempt_to_announce_for_as_long_as_it_may_run(template):
    """Shorter than the function may run, a delivery meeting the disable would say it a second time beside a live
    announcer; past the queue's visibility timeout, the dead announcer's record would come back to leave it unsaid."""
    from spectra.notify.delivery import DISABLE_ANNOUNCED_WITHIN

    resources = template["Resources"]
    timeout = resources["WebhookDeliveryFunction"]["Properties"]["Timeout"]
    visibility = resources["WebhookDeliveryQueue"]["Properties"]["VisibilityTimeout"]
    assert timeout < DISABLE_ANNOUNCED_WITHIN.total_seconds() < visibility


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


def test_only_the_authorizer_reads_api_key_items_and_no_function_identity_items_of_the_tenants_table(template):
    """The tenants table holds API-key hashes (``key#``) and identity claims (``identity#``) beside the tenants'
    records and slots; the API, executor, S3 drop and notifier read any item of it (found by the contracts review),
    and the authorizer, which reads keys and tenant records only, any item too (found by the security review)."""
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        allowed = ("key#*", "tenant#*") if name == "AuthorizerFunction" else ("tenant#*", "slots#*", "waits#*")
        for policy in function["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                if not isinstance(statement, dict) or "Action" not in statement:
                    continue  # conditional statements (Fn::If) are checked by cfn-lint
                if statement.get("Resource") != {"Fn::GetAtt": ["TenantsTable", "Arn"]}:  # (a Deny's NotResource)
                    continue
                actions = statement["Action"]
                keys = statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
                assert keys, f"{name} may {actions} any item of the tenants table"
                assert all(k in allowed for k in keys), (name, keys)


def test_the_api_may_ask_how_a_statement_it_could_not_cancel_ended(template):
    """A refused cancel asks DescribeStatement (spectra.queries.cancel_job): without the right, every such DELETE
    was answered as if its cancel stood (found by the third diff review)."""
    statements = template["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"]
    actions = {a for s in statements if isinstance(s, dict) for a in s.get("Action", [])}
    assert {"redshift-data:CancelStatement", "redshift-data:DescribeStatement"} <= actions


def test_the_api_may_withdraw_a_query_job_whose_create_failed(template):
    """A keyless job written by an attempt before its create's error is deleted (spectra.queries.submit_query):
    without the right, it stayed QUEUED and the reconciler ran it beside the client's retry (README walk)."""
    statements = template["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"]
    deletes = [s for s in statements if isinstance(s, dict) and "dynamodb:DeleteItem" in s.get("Action", [])]
    assert {"Fn::GetAtt": ["JobsTable", "Arn"]} in [s["Resource"] for s in deletes]


def test_the_api_may_check_the_tenant_record_a_subscription_is_stored_against(template):
    """A subscription's create is one transaction with a ConditionCheck on its tenant's record
    (SubscriptionStore.create): IAM authorises that item by ``dynamodb:ConditionCheckItem``, on tenant records only
    (found by the diff review)."""
    statements = template["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"]
    checks = [s for s in statements if isinstance(s, dict) and "dynamodb:ConditionCheckItem" in s.get("Action", [])]
    assert [(s["Resource"], s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]) for s in checks] == [
        ({"Fn::GetAtt": ["TenantsTable", "Arn"]}, ["tenant#*"])
    ]


def test_the_executor_knows_the_jobs_queues_last_delivery(template):
    redrive = template["Resources"]["JobsQueue"]["Properties"]["RedrivePolicy"]
    assert Settings.model_fields["executor_max_attempts"].default == redrive["maxReceiveCount"]


def test_the_consumers_that_fail_a_record_left_for_lack_of_time_know_their_queues_last_receive(template):
    """The notifier and the S3 drop function begin a record on its last receive whatever the time (failed there, it
    would go to the dead-letter queue untried): spectra.deadline.LAST_RECEIVE is their queues' maxReceiveCount."""
    for queue in ("NotifyQueue", "IngestQueue"):
        redrive = template["Resources"][queue]["Properties"]["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == deadline.LAST_RECEIVE, queue


@pytest.mark.parametrize(
    ("function", "module"),
    [
        ("ExecutorFunction", "consumers.executor.app"),
        ("NotifierFunction", "consumers.notifier.app"),
        ("S3DropFunction", "producers.s3_drop.app"),
    ],
)
def test_a_consumer_begins_records_while_half_its_timeout_is_left(template, function, module):
    """Each consumer's START_MARGIN_SECONDS is half of its Timeout: a Timeout lowered to the margin or under would
    leave every record of every batch (the first included) and send it all round again."""
    timeout = template["Resources"][function]["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"])
    assert timeout / 2 == importlib.import_module(module).START_MARGIN_SECONDS


def test_the_authorizer_cache_is_a_parameter_of_at_most_60_seconds(template):
    """A revoked key or a deactivated tenant must be refused within 60 s: no authorizer may cache its answer longer."""
    parameter = template["Parameters"]["AuthorizerCacheSeconds"]
    assert int(parameter["MaxValue"]) <= 60 and int(parameter["Default"]) <= 60
    apis = resources_of(template, "AWS::Serverless::Api").values()
    authorizers = [a for api in apis for a in api["Properties"]["Auth"]["Authorizers"].values()]
    assert authorizers
    for authorizer in authorizers:
        assert authorizer["Identity"]["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheSeconds"}


def test_results_are_never_kept_past_the_job_records_that_answer_for_them(template):
    """A bulk job may stay Open ResultRetentionDays (less a margin) before its load, which runs up to the Data API's
    24 hours; its result files are written up to RESULTS_GIVEN_UP_AFTER later and kept ResultRetentionDays, rounded
    up to a midnight. A result promised past its job's record (30 days) would answer 404, not its rows or 410 gone."""
    from datetime import timedelta

    from spectra.bulk.reconcile import RESULTS_GIVEN_UP_AFTER
    from spectra.bulk.service import OPEN_MARGIN
    from spectra.bulk.store import JOB_TTL as BULK_JOB_TTL
    from spectra.job_store import JOB_TTL

    most = template["Parameters"]["ResultRetentionDays"]["MaxValue"]
    retention = timedelta(days=most)
    longest = (retention - OPEN_MARGIN) + timedelta(hours=24) + RESULTS_GIVEN_UP_AFTER + retention + timedelta(days=1)
    assert longest < min(JOB_TTL, BULK_JOB_TTL)
    assert most in (getattr(rule, "le", None) for rule in Settings.model_fields["result_retention_days"].metadata)


def test_the_running_cap_reaches_every_function_that_reads_it(template):
    """The executor takes slots under the cap and the reconciler judges each tenant's line by it: set for the
    executor alone, the reconciler read the default (5) on AWS, where each function sees only its own variables and
    the Globals (the local stack merges them all, so no local run showed it; found by review)."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["TENANT_MAX_RUNNING_STATEMENTS"] == {"Ref": "TenantMaxRunningStatements"}


def test_the_stage_lets_every_usage_plan_have_its_rate(template):
    """The stage-wide throttle was below the Premium plan's (20 req/s in dev, 100 in prod, against 200): a tenant
    could never get its plan's rate, and one tenant at it took every other tenant's (hostile-tenant review)."""
    settings = template["Resources"]["Api"]["Properties"]["MethodSettings"]
    [stage] = [s for s in settings if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*"]
    plans = [plan["Properties"]["Throttle"] for plan in resources_of(template, "AWS::ApiGateway::UsagePlan").values()]
    assert len(plans) == 3
    for limit, plan_field in (("ThrottlingRateLimit", "RateLimit"), ("ThrottlingBurstLimit", "BurstLimit")):
        prod, dev = stage[limit]["Fn::If"][1:]
        assert min(prod, dev) >= max(plan[plan_field] for plan in plans), limit


def test_the_cap_on_waits_reaches_the_api_that_applies_it(template):
    """Only the API waits (one-call queries; spectra/waits.py), so the cap is its variable, not a global one."""
    api = resources_of(template, "AWS::Serverless::Function")["ApiFunction"]
    assert api["Properties"]["Environment"]["Variables"]["TENANT_MAX_WAITS"] == {"Ref": "TenantMaxWaits"}


def test_the_api_that_keeps_a_callback_knows_how_many_times_its_delivery_is_tried(template):
    """The API sets a query callback's expiry past its last delivery attempt (callback_life), from WebhookMaxAttempts,
    which only the delivery function was given: on AWS the API worked it out at the default 10 attempts, and with the
    parameter at 50 the last two days of retries found the callback gone and were dropped (found by review)."""
    functions = resources_of(template, "AWS::Serverless::Function")
    for name in ("ApiFunction", "WebhookDeliveryFunction"):
        variables = functions[name]["Properties"]["Environment"]["Variables"]
        assert variables["WEBHOOK_MAX_ATTEMPTS"] == {"Ref": "WebhookMaxAttempts"}, name


def test_a_statement_is_taken_for_an_orphan_only_once_every_executor_that_could_record_it_has_ended(template):
    """Completion records on a job still QUEUED a statement made ORPHANED_AFTER_SECONDS ago (spectra/lifecycle.py):
    past the executor's Timeout, with room to spare, no executor can still be about to record it."""
    from spectra.lifecycle import ORPHANED_AFTER_SECONDS

    executor = resources_of(template, "AWS::Serverless::Function")["ExecutorFunction"]["Properties"]
    timeout = executor.get("Timeout", template["Globals"]["Function"]["Timeout"])
    assert 2 * timeout <= ORPHANED_AFTER_SECONDS


def test_the_executor_knows_the_tenant_prefixes_iam_grants(template):
    """The prefixes the executor checks in code are the template's, the ones its IAM policy is written with."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["TENANT_DB_USER_PREFIX"] == {"Ref": "TenantDbUserPrefix"}
    assert variables["TENANT_SECRET_PREFIX"] == {"Ref": "TenantSecretPrefix"}


def test_every_function_logs_to_a_declared_group_with_retention_and_the_stacks_key(template):
    """Lambda's own /aws/lambda/<name> groups keep logs forever; each function names a declared group instead."""
    groups = resources_of(template, "AWS::Logs::LogGroup")
    key_policy = template["Resources"]["LogsKey"]["Properties"]["KeyPolicy"]["Statement"]
    logs_service = {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    (allowed,) = [statement for statement in key_policy if statement["Principal"] == logs_service]
    arns = allowed["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    prefixes = [arn["Fn::Sub"].split(":log-group:")[1].rstrip("*") for arn in arns]
    functions = resources_of(template, "AWS::Serverless::Function")
    used = set()
    for name, function in functions.items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        used.add(group)
        assert groups[group]["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{name}"}
    used.add(template["Resources"]["Api"]["Properties"]["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0])
    assert used == set(groups), "a log group nobody writes to, or one written to twice"
    for name, group in groups.items():
        properties = group["Properties"]
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert properties["KmsKeyId"] == {"Fn::GetAtt": ["LogsKey", "Arn"]}, name
        # the key lets CloudWatch Logs use it for this stack's groups only: every group's name is under those prefixes
        assert any(properties["LogGroupName"]["Fn::Sub"].startswith(p) for p in prefixes), name
    retention = template["Parameters"]["LogRetentionDays"]
    assert int(retention["Default"]) in retention["AllowedValues"]


def test_api_access_log_is_one_json_line_without_bodies_or_headers(template):
    api = template["Resources"]["Api"]["Properties"]
    fields = json.loads(api["AccessLogSetting"]["Format"])
    assert {"requestId", "tenant", "method", "resource", "status", "error"} <= set(fields)
    assert all(value.startswith("$context.") for value in fields.values())
    assert not any("header" in value.lower() or "body" in value.lower() for value in fields.values())
    # API Gateway's own refusals keep the one error shape
    for name, response in api["GatewayResponses"].items():
        body = response["ResponseTemplates"]["application/json"].replace("$context.error.messageString", '"m"')
        assert set(json.loads(body)["error"]) == {"code", "message", "details"}, name


def test_api_gateways_own_answers_carry_the_apis_answer_headers(template):
    """API Gateway's refusals (401, 403, 404, 429, 5xx ...) said nothing to caches, where every function's answer
    says no-store and nosniff: a 404 is heuristically cacheable, and a refusal is nothing a cache should keep."""
    for name, response in template["Resources"]["Api"]["Properties"]["GatewayResponses"].items():
        headers = response.get("ResponseParameters", {}).get("Headers", {})
        assert {k: v for k, v in headers.items() if k in ANSWER_HEADERS} == {
            k: f"'{v}'" for k, v in ANSWER_HEADERS.items()
        }, name


def test_an_authorizer_that_fails_is_a_503_to_retry_whichever_response_api_gateway_names_it(template):
    """An authorizer that raised or timed out (its tenants table throttling) was API Gateway's bare 500. AWS names
    it AUTHORIZER_CONFIGURATION_ERROR, or AUTHORIZER_FAILURE: both are one 503 with Retry-After, and the local
    gateway answers through the first (the storm review: it used the second, so the first went untested)."""
    from local.runner.api_gateway import _RESPONSE_TYPES

    responses = template["Resources"]["Api"]["Properties"]["GatewayResponses"]
    configuration, failure = responses["AUTHORIZER_CONFIGURATION_ERROR"], responses["AUTHORIZER_FAILURE"]
    assert configuration == failure
    assert configuration["StatusCode"] == 503 and configuration["ResponseParameters"]["Headers"]["Retry-After"]
    assert _RESPONSE_TYPES[500] == "AUTHORIZER_CONFIGURATION_ERROR"


def test_the_executor_is_bounded_by_its_event_sources_maximum_concurrency(template):
    jobs = template["Resources"]["ExecutorFunction"]["Properties"]["Events"]["Jobs"]["Properties"]
    assert jobs["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "ExecutorMaxConcurrency"}
    parameter = template["Parameters"]["ExecutorMaxConcurrency"]
    # Lambda accepts 2 to 1000
    assert 2 <= int(parameter["MinValue"]) <= int(parameter["Default"]) <= int(parameter["MaxValue"]) <= 1000


def test_every_checkov_skip_says_why(template):
    """checkov itself runs in tests/integration/template/test_checkov.py; the reasons are checked here too, cheaply."""
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert skip["id"].startswith("CKV"), name
        assert len(skip.get("comment", "").split()) >= 5, (name, skip["id"])


def test_every_tag_the_drop_door_leaves_on_a_file_expires_it(template):
    """Loaded drops and drops that made no job alike (a tenant since deleted included): none stays forever."""
    from spectra.bulk.drops import REJECTED_TAG, REJECTIONS

    rules = template["Resources"]["IngestBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {
        (tag["Key"], tag["Value"])
        for rule in rules
        if rule["Status"] == "Enabled" and rule.get("ExpirationInDays")
        for tag in rule.get("TagFilters", [])
    }
    left = {("spectra-processed", "true"), *((REJECTED_TAG, why) for why in REJECTIONS)}
    assert left <= expiring, sorted(left - expiring)


def _holds(condition, parameters: dict[str, str]) -> bool:
    """A rule assertion of the template evaluated on ``parameters`` (the functions its rules use)."""
    ((name, argument),) = condition.items()
    if name == "Fn::Equals":
        return _holds_value(argument[0], parameters) == _holds_value(argument[1], parameters)
    if name == "Fn::Not":
        return not _holds(argument[0], parameters)
    if name == "Fn::And":
        return all(_holds(c, parameters) for c in argument)
    if name == "Fn::Or":
        return any(_holds(c, parameters) for c in argument)
    raise AssertionError(f"a rule function this test does not read: {name}")


def _holds_value(value, parameters: dict[str, str]):
    return parameters[value["Ref"]] if isinstance(value, dict) else value


@pytest.mark.parametrize(
    ("cluster", "workgroup", "deploys"),
    [("spectra", "", True), ("", "spectra", True), ("", "", False), ("spectra", "spectra", False)],
)
def test_the_rules_take_exactly_one_warehouse(template, cluster, workgroup, deploys):
    """README (Deploy): every function reads its warehouse from one of the two; neither or both is refused."""
    parameters = {"RedshiftClusterId": cluster, "RedshiftWorkgroup": workgroup}
    assertions = template["Rules"]["OneWarehouse"]["Assertions"]
    assert all(_holds(a["Assert"], parameters) for a in assertions) is deploys


@pytest.mark.parametrize(
    ("jwks_url", "issuer", "audience", "claim"),
    [
        ("https://idp.example/.well-known/jwks.json", "", "spectra-api", "tenant_id"),  # no issuer
        ("https://idp.example/.well-known/jwks.json", "https://idp.example/", "", "tenant_id"),  # no audience
        ("http://idp.example/.well-known/jwks.json", "https://idp.example/", "spectra-api", "tenant_id"),  # plain HTTP
        ("", "", "", ""),  # no JWTs, but no claim name either
    ],
)
def test_jwt_parameters_the_functions_cannot_load_are_refused_at_deploy(template, jwks_url, issuer, audience, claim):
    """The settings refuse each of these, and the authorizer loads its settings for every request: after such a
    deploy every request, API keys included, failed (found by the authentication review)."""
    from spectra.settings import Settings

    with pytest.raises(ValueError):
        Settings(
            jobs_table="j",
            tenants_table="t",
            jobs_queue_url="q",
            results_bucket="b",
            event_bus_name="e",
            redshift_cluster_id="c",
            jwks_url=jwks_url,
            jwt_issuer=issuer,
            jwt_audience=audience,
            jwt_tenant_claim=claim,
        )
    parameters = {"JwksUrl": jwks_url, "JwtIssuer": issuer, "JwtAudience": audience, "JwtTenantClaim": claim}
    refused = [
        name
        for name, value in parameters.items()
        if not re.fullmatch(template["Parameters"][name].get("AllowedPattern", ".*"), value)
        or len(value) < template["Parameters"][name].get("MinLength", 0)
    ]
    assertions = template["Rules"]["JwtComplete"]["Assertions"]
    assert refused or not all(_holds(a["Assert"], parameters) for a in assertions)


@pytest.mark.parametrize(
    "jwks_url", ["", "https://idp.example/.well-known/jwks.json", "http://127.0.0.1:8080/jwks.json"]
)
def test_jwt_parameters_the_functions_load_deploy(template, jwks_url):
    parameters = {"JwksUrl": jwks_url, "JwtIssuer": "https://idp.example/", "JwtAudience": "spectra-api"}
    assert re.fullmatch(template["Parameters"]["JwksUrl"]["AllowedPattern"], jwks_url)
    assert all(_holds(a["Assert"], parameters) for a in template["Rules"]["JwtComplete"]["Assertions"])


def _settings_with(**fields):
    from spectra.settings import Settings

    required = {"jobs_table": "j", "tenants_table": "t", "redshift_cluster_id": "c"}
    return Settings(**required, **fields)


def _deploys(template, name: str, value: str) -> bool:
    parameter = template["Parameters"][name]
    return bool(re.fullmatch(parameter.get("AllowedPattern", ".*"), value)) and len(value) >= parameter.get(
        "MinLength", 0
    )


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("TenantDbUserPrefix", ""),  # the settings refuse it, and IAM's dbuser:<cluster>/* took in the admin
        ("TenantSecretPrefix", ""),  # the settings refuse it, and IAM's secret:* took in every secret of the account
        ("TenantDbUserPrefix", "t*"),  # an IAM wildcard: the policy granted users the prefix does not name
        ("TenantDbUserPrefix", "ten?nt_"),
        ("TenantDbUserPrefix", "_t"),  # GetClusterCredentials takes a DbUser starting with a letter only
        ("TenantDbUserPrefix", "t$"),
        ("TenantSecretPrefix", "spectra/*"),
    ],
)
def test_tenant_prefixes_that_would_widen_the_iam_grant_or_stop_the_functions_are_refused_at_deploy(
    template, parameter, value
):
    """README (Tenancy and security): the executor may get credentials only for users under TenantDbUserPrefix (and
    read only secrets under TenantSecretPrefix), never the admin. Both went into the IAM policy as they were given: an
    empty prefix deployed a policy for every user (the admin too) or every secret, and functions whose settings
    refuse it (every request failed), and a wildcard in one granted names the code then refuses."""
    if not value:
        field = {"TenantDbUserPrefix": "tenant_db_user_prefix", "TenantSecretPrefix": "tenant_secret_prefix"}[parameter]
        with pytest.raises(ValueError):
            _settings_with(**{field: value})
    assert not _deploys(template, parameter, value)


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("TenantDbUserPrefix", "tenant_"), ("TenantDbUserPrefix", "T_"), ("TenantSecretPrefix", "spectra/tenants/")],
)
def test_tenant_prefixes_the_functions_load_deploy(template, parameter, value):
    field = {"TenantDbUserPrefix": "tenant_db_user_prefix", "TenantSecretPrefix": "tenant_secret_prefix"}[parameter]
    _settings_with(**{field: value})
    assert _deploys(template, parameter, value)
    assert _deploys(template, parameter, template["Parameters"][parameter]["Default"])
