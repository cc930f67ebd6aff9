"""A Lambda authorizer whose answer the token decides (``Bearer <verdict>``).

allow → Allow on every method of the API; narrow → Allow on this method ARN only (shows cache semantics);
deny → explicit Deny; slow → allow, after longer than the function's Timeout (3 s, Lambda's default); anything else
→ ``Exception("Unauthorized")``, API Gateway's 401 convention.
"""

import time


def handle(event, context):
    token = event["authorizationToken"] if event["type"] == "TOKEN" else event["headers"]["Authorization"]
    verdict = token.removeprefix("Bearer ").strip()
    arn = event["methodArn"]
    api_prefix = "/".join(arn.split("/")[:2])  # arn:...:api-id/stage
    if verdict == "allow":
        return _policy("Allow", f"{api_prefix}/*", event)
    if verdict == "narrow":
        return _policy("Allow", arn, event)
    if verdict == "slow":
        time.sleep(context.get_remaining_time_in_millis() / 1000 + 0.5)
        return _policy("Allow", f"{api_prefix}/*", event)
    if verdict == "deny":
        return _policy("Deny", f"{api_prefix}/*", event)
    raise Exception("Unauthorized")


def _policy(effect, resource, event):
    return {
        "principalId": "user-1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": {"tenant": "acme", "limit": 5, "admin": False, "type": event["type"]},
    }
