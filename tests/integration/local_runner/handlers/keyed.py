"""A REQUEST authorizer that names the caller's usage-plan key: ``Bearer <key value>`` → ``usageIdentifierKey``."""


def handle(event, context):
    value = event["headers"]["Authorization"].removeprefix("Bearer ").strip()
    api_prefix = "/".join(event["methodArn"].split("/")[:2])
    return {
        "principalId": "caller",
        "usageIdentifierKey": value,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": f"{api_prefix}/*"}],
        },
    }
