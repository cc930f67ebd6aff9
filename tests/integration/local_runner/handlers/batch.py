"""An SQS consumer whose outcome the messages decide.

Body "fail": reported in batchItemFailures. Body "boom": the handler raises. Body "bogus": the handler reports an
identifier that is not in the batch, which Lambda treats as a failure of the whole batch.
"""


def handle(event, context):
    bodies = [record["body"] for record in event["Records"]]
    if "boom" in bodies:
        raise RuntimeError("boom: the whole batch fails")
    if "bogus" in bodies:
        return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}
    failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"]
    return {"batchItemFailures": failures}
