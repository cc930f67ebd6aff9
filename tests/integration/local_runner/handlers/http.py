"""An API proxy integration that echoes the proxy event, plus a few fixed responses."""

import base64
import json


def echo(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Handler": "echo"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(event),
    }


def binary(event, context):
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/octet-stream"},
        "body": base64.b64encode(b"\x00\x01\xff").decode(),
        "isBase64Encoded": True,
    }


def sized(event, context):
    """How many bytes of body arrived, in an answer of ``?answer=N`` bytes (at least the count itself)."""
    body = event.get("body") or ""
    received = len(base64.b64decode(body)) if event.get("isBase64Encoded") else len(body.encode())
    size = int((event.get("queryStringParameters") or {}).get("answer", 0))
    return {"statusCode": 200, "body": json.dumps({"received": received, "pad": "p" * size})}


def broken(event, context):
    raise RuntimeError("an unhandled error becomes API Gateway's 502")


def slow(event, context):
    """200 after ``?seconds=`` seconds (past the route's or the function's timeout, in the timeout tests)."""
    import time

    time.sleep(float((event.get("queryStringParameters") or {}).get("seconds", 0)))
    return {"statusCode": 200, "body": "{}"}
