"""An SQS consumer whose outcome each message decides: body "fail" is reported failed, body "boom" raises."""


def handle(event, context):
    bodies = [record["body"] for record in event["Records"]]
    if "boom" in bodies:
        raise RuntimeError("boom: the whole batch fails")
    failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"]
    return {"batchItemFailures": failures}
