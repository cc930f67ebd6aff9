"""One creator per supported resource type: CloudFormation properties in, moto resource and attributes out.

Each creator receives properties with every intrinsic already resolved, translates CloudFormation's property shapes
to the service API's (they differ more often than one would like: S3 notifications, DynamoDB streams, SQS
attributes are all spelled differently), and returns what ``Ref`` and ``GetAtt`` should yield, as CloudFormation
documents them. Creation is tolerant of a resource that already exists with a fixed name, so a template with explicit
names can be started twice against the same moto server.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ParamValidationError

from local.runner.template import PhysicalResource, as_text

if TYPE_CHECKING:
    from local.runner.provision import ProvisionContext

log = logging.getLogger(__name__)


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _tags(properties: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": as_text(t["Value"])} for t in properties.get("Tags") or []]


# -- SQS -------------------------------------------------------------------------------------------------------------

_SQS_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
)


def create_queue(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    fifo = as_text(props.get("FifoQueue", False)) == "true"
    name = props.get("QueueName") or ctx.generated_name(logical_id, max_length=80, suffix=".fifo" if fifo else "")
    attributes = {key: as_text(props[key]) for key in _SQS_ATTRIBUTES if key in props}
    if fifo:
        attributes["FifoQueue"] = "true"
    for key in ("RedrivePolicy", "RedriveAllowPolicy"):
        if key in props:
            policy = props[key]
            attributes[key] = policy if isinstance(policy, str) else json.dumps(policy)
    sqs = ctx.client("sqs")
    kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if props.get("Tags"):
        kwargs["tags"] = {t["Key"]: as_text(t["Value"]) for t in props["Tags"]}
    url = sqs.create_queue(**kwargs)["QueueUrl"]
    arn = f"arn:aws:sqs:{ctx.region}:{ctx.account_id}:{name}"
    return PhysicalResource(
        logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url}, properties=props
    )


# -- S3 --------------------------------------------------------------------------------------------------------------


def create_bucket(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    name = props.get("BucketName") or ctx.generated_name(logical_id, max_length=63, lowercase=True)
    s3 = ctx.client("s3")
    kwargs: dict[str, Any] = {"Bucket": name}
    if ctx.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _error_code(exc) != "BucketAlreadyOwnedByYou":
            raise
    _configure_bucket(s3, name, props)
    attributes = {
        "Arn": f"arn:aws:s3:::{name}",
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com",
        "DualStackDomainName": f"{name}.s3.dualstack.{ctx.region}.amazonaws.com",
        "WebsiteURL": f"http://{name}.s3-website-{ctx.region}.amazonaws.com",
    }
    return PhysicalResource(logical_id, "AWS::S3::Bucket", name, attributes, properties=props)


def _configure_bucket(s3, name: str, props: dict[str, Any]) -> None:
    """Apply the optional bucket settings; each is best effort because moto's coverage of them varies."""
    steps = {
        "VersioningConfiguration": lambda v: s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": v["Status"]}
        ),
        "NotificationConfiguration": lambda v: s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration=_notification_configuration(v)
        ),
        "LifecycleConfiguration": lambda v: s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in v.get("Rules", [])]}
        ),
        "CorsConfiguration": lambda v: s3.put_bucket_cors(
            Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(r) for r in v.get("CorsRules", [])]}
        ),
        "PublicAccessBlockConfiguration": lambda v: s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=v
        ),
        "BucketEncryption": lambda v: s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [_encryption_rule(r) for r in v.get("ServerSideEncryptionConfiguration", [])]
            },
        ),
        "Tags": lambda v: s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(props)}),
    }
    for key, apply in steps.items():
        if key not in props:
            continue
        try:
            apply(props[key])
        except (ClientError, ParamValidationError, KeyError, TypeError) as exc:
            log.warning("bucket %s: %s not applied locally: %s", name, key, exc)


def _encryption_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation says ServerSideEncryptionByDefault where the S3 API says ApplyServerSideEncryptionByDefault."""
    rule = dict(rule)
    if "ServerSideEncryptionByDefault" in rule:
        rule["ApplyServerSideEncryptionByDefault"] = rule.pop("ServerSideEncryptionByDefault")
    return rule


def _notification_configuration(cfn: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if as_text(cfn.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled", False)) == "true":
        config["EventBridgeConfiguration"] = {}
    queues = []
    for item in cfn.get("QueueConfigurations", []):
        entry: dict[str, Any] = {"QueueArn": item["Queue"], "Events": [item["Event"]]}
        rules = item.get("Filter", {}).get("S3Key", {}).get("Rules")
        if rules:
            entry["Filter"] = {"Key": {"FilterRules": rules}}
        queues.append(entry)
    if queues:
        config["QueueConfigurations"] = queues
    for unsupported in ("LambdaConfigurations", "TopicConfigurations"):
        if cfn.get(unsupported):
            log.warning("S3 %s are not delivered locally; route bucket events through EventBridge or SQS", unsupported)
    return config


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Status": rule.get("Status", "Enabled"), "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return out


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    renames = {"Id": "ID", "MaxAge": "MaxAgeSeconds"}
    return {renames.get(key, key): value for key, value in rule.items()}


# -- DynamoDB --------------------------------------------------------------------------------------------------------


def _index(index: dict[str, Any], billing_mode: str) -> dict[str, Any]:
    out = {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
    if billing_mode == "PROVISIONED" and "ProvisionedThroughput" in index:
        out["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
    return out


def _throughput(value: dict[str, Any]) -> dict[str, int]:
    return {key: int(value[key]) for key in ("ReadCapacityUnits", "WriteCapacityUnits")}


def create_table(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    name = props.get("TableName") or ctx.generated_name(logical_id, max_length=255)
    # CloudFormation defaults to PROVISIONED; without a throughput that would be invalid, so be lenient locally.
    billing = props.get("BillingMode") or ("PROVISIONED" if "ProvisionedThroughput" in props else "PAY_PER_REQUEST")
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            kwargs[key] = [_index(index, billing) for index in props[key]]
    stream = props.get("StreamSpecification")
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props)
    dynamodb = ctx.client("dynamodb")
    try:
        description = dynamodb.create_table(**kwargs)["TableDescription"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
        description = dynamodb.describe_table(TableName=name)["Table"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and as_text(ttl.get("Enabled", False)) == "true":
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    attributes = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return PhysicalResource(logical_id, "AWS::DynamoDB::Table", name, attributes, properties=props)


def create_simple_table(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    """SAM's SimpleTable: one string (or number/binary) hash key, on-demand billing unless throughput is given."""
    key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    kind = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
    table_props: dict[str, Any] = {
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
    }
    for name in ("TableName", "ProvisionedThroughput", "Tags"):
        if name in props:
            table_props[name] = (
                props[name] if name != "Tags" else [{"Key": k, "Value": v} for k, v in props[name].items()]
            )
    physical = create_table(ctx, logical_id, table_props)
    physical.resource_type = "AWS::Serverless::SimpleTable"
    return physical


# -- EventBridge -----------------------------------------------------------------------------------------------------


def create_event_bus(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    name = props["Name"]
    events = ctx.client("events")
    try:
        arn = events.create_event_bus(Name=name)["EventBusArn"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise
        arn = events.describe_event_bus(Name=name)["Arn"]
    return PhysicalResource(logical_id, "AWS::Events::EventBus", name, {"Arn": arn, "Name": name}, properties=props)


_TARGET_KEYS = (
    "Id",
    "Arn",
    "Input",
    "InputPath",
    "InputTransformer",
    "SqsParameters",
    "DeadLetterConfig",
    "RetryPolicy",
)


def create_rule(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    name = props.get("Name") or ctx.generated_name(logical_id, max_length=64)
    bus = props.get("EventBusName") or "default"
    bus_name = bus.rsplit("/", 1)[-1] if bus.startswith("arn:") else bus
    kwargs: dict[str, Any] = {"Name": name, "EventBusName": bus_name, "State": props.get("State", "ENABLED")}
    pattern = props.get("EventPattern")
    if pattern is not None:
        kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    if props.get("ScheduleExpression"):
        kwargs["ScheduleExpression"] = props["ScheduleExpression"]
    if props.get("Description"):
        kwargs["Description"] = props["Description"]
    events = ctx.client("events")
    arn = events.put_rule(**kwargs)["RuleArn"]
    targets = []
    for target in props.get("Targets") or []:
        if not target["Arn"].startswith("arn:aws:sqs:"):
            # moto 5 fails put_events with HTTP 500 for Lambda/SNS targets; the design routes rules to queues anyway.
            log.warning("rule %s: target %s is not an SQS queue; skipped locally", logical_id, target["Arn"])
            continue
        targets.append({key: target[key] for key in _TARGET_KEYS if key in target})
    if targets:
        events.put_targets(Rule=name, EventBusName=bus_name, Targets=targets)
    props = {**props, "Targets": targets, "_EventBusName": bus_name, "_Name": name}
    # CloudFormation's Ref of a rule on a custom bus is "bus|rule"; on the default bus it is the rule name.
    ref = name if bus_name == "default" else f"{bus_name}|{name}"
    return PhysicalResource(logical_id, "AWS::Events::Rule", ref, {"Arn": arn}, properties=props)


# -- SNS -------------------------------------------------------------------------------------------------------------


def create_topic(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    fifo = as_text(props.get("FifoTopic", False)) == "true"
    name = props.get("TopicName") or ctx.generated_name(logical_id, max_length=256, suffix=".fifo" if fifo else "")
    attributes = {}
    if fifo:
        attributes["FifoTopic"] = "true"
    if "ContentBasedDeduplication" in props:
        attributes["ContentBasedDeduplication"] = as_text(props["ContentBasedDeduplication"])
    sns = ctx.client("sns")
    arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    for subscription in props.get("Subscription") or []:
        _subscribe(sns, arn, subscription)
    return PhysicalResource(logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name}, properties=props)


def _subscribe(sns, topic_arn: str, props: dict[str, Any]) -> str | None:
    protocol = props["Protocol"]
    if protocol not in ("sqs", "http", "https", "email", "sms"):
        log.warning("SNS subscription with protocol %s is not delivered locally; skipped", protocol)
        return None
    attributes = {}
    for key in ("RawMessageDelivery", "FilterPolicyScope"):
        if key in props:
            attributes[key] = as_text(props[key])
    for key in ("FilterPolicy", "RedrivePolicy"):
        if key in props:
            attributes[key] = props[key] if isinstance(props[key], str) else json.dumps(props[key])
    response = sns.subscribe(
        TopicArn=topic_arn,
        Protocol=protocol,
        Endpoint=props["Endpoint"],
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )
    return response["SubscriptionArn"]


def create_subscription(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    arn = _subscribe(ctx.client("sns"), props["TopicArn"], props)
    status = "created" if arn else "skipped"
    return PhysicalResource(
        logical_id, "AWS::SNS::Subscription", arn or ctx.generated_name(logical_id), properties=props, status=status
    )


# -- Secrets Manager, SSM --------------------------------------------------------------------------------------------


def create_secret(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    name = props.get("Name") or f"{logical_id}-{secrets.token_hex(6)}"
    value = props.get("SecretString")
    if value is None:
        value = _generate_secret_string(props.get("GenerateSecretString") or {})
    client = ctx.client("secretsmanager")
    kwargs: dict[str, Any] = {"Name": name, "SecretString": value}
    if props.get("Description"):
        kwargs["Description"] = props["Description"]
    try:
        arn = client.create_secret(**kwargs)["ARN"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceExistsException":
            raise
        arn = client.describe_secret(SecretId=name)["ARN"]
    return PhysicalResource(logical_id, "AWS::SecretsManager::Secret", arn, {"Id": arn}, properties=props)


def _generate_secret_string(spec: dict[str, Any]) -> str:
    """GenerateSecretString, close enough: a random password, optionally placed into a JSON template."""
    alphabet = ""
    if as_text(spec.get("ExcludeLowercase", False)) != "true":
        alphabet += string.ascii_lowercase
    if as_text(spec.get("ExcludeUppercase", False)) != "true":
        alphabet += string.ascii_uppercase
    if as_text(spec.get("ExcludeNumbers", False)) != "true":
        alphabet += string.digits
    if as_text(spec.get("ExcludePunctuation", False)) != "true":
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    if as_text(spec.get("IncludeSpace", False)) == "true":
        alphabet += " "
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = "".join(c for c in alphabet if c not in excluded) or string.ascii_letters
    password = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec and "GenerateStringKey" in spec:
        document = json.loads(spec["SecretStringTemplate"])
        document[spec["GenerateStringKey"]] = password
        return json.dumps(document)
    return password


def create_parameter(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    name = props.get("Name") or ctx.generated_name(logical_id, max_length=2048)
    ctx.client("ssm").put_parameter(
        Name=name, Type=props.get("Type", "String"), Value=as_text(props["Value"]), Overwrite=True
    )
    return PhysicalResource(
        logical_id,
        "AWS::SSM::Parameter",
        name,
        {"Type": props.get("Type", "String"), "Value": props["Value"]},
        properties=props,
    )


# -- API Gateway usage plans -----------------------------------------------------------------------------------------


def create_usage_plan(ctx: ProvisionContext, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
    """A usage plan in moto's API Gateway, so tenant provisioning attaches keys to it as on AWS and the local gateway
    meters requests by it (``local/runner/usage_plans.py``). API keys and plan keys are made by provisioning code,
    not by the template."""
    name = props.get("UsagePlanName") or ctx.generated_name(logical_id)
    request: dict[str, Any] = {"name": name, "description": props.get("Description", "")}
    throttle = props.get("Throttle") or {}
    if throttle:
        request["throttle"] = {
            key: value
            for key, value in (
                ("burstLimit", throttle.get("BurstLimit")),
                ("rateLimit", throttle.get("RateLimit")),
            )
            if value is not None
        }
    quota = props.get("Quota") or {}
    if quota:
        request["quota"] = {
            "limit": int(quota["Limit"]),
            "period": quota["Period"],
            "offset": int(quota.get("Offset", 0)),
        }
    stages = [{"apiId": s["ApiId"], "stage": s["Stage"]} for s in props.get("ApiStages") or []]
    if stages:
        request["apiStages"] = stages
    tags = {t["Key"]: t["Value"] for t in _tags(props)}
    if tags:
        request["tags"] = tags
    plan = ctx.client("apigateway").create_usage_plan(**request)
    return PhysicalResource(logical_id, "AWS::ApiGateway::UsagePlan", plan["id"], {"Id": plan["id"]}, properties=props)


CREATORS = {
    "AWS::SQS::Queue": create_queue,
    "AWS::S3::Bucket": create_bucket,
    "AWS::DynamoDB::Table": create_table,
    "AWS::Serverless::SimpleTable": create_simple_table,
    "AWS::Events::EventBus": create_event_bus,
    "AWS::Events::Rule": create_rule,
    "AWS::SNS::Topic": create_topic,
    "AWS::SNS::Subscription": create_subscription,
    "AWS::SecretsManager::Secret": create_secret,
    "AWS::SSM::Parameter": create_parameter,
    "AWS::ApiGateway::UsagePlan": create_usage_plan,
}
