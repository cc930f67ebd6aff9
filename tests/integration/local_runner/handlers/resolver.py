"""A Powertools REST resolver whose route reads the request after all concurrent invocations hold theirs.

Powertools keeps the request on a class attribute (``BaseRouter.current_event``), not on the module; if the runner
let that be shared, each of these invocations would answer with the last one's path.
"""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from handlers import meeting

app = APIGatewayRestResolver()


@app.get("/items/<item>")
def item(item: str) -> dict:
    group, parties = app.current_event.get_query_string_value("group"), app.current_event.get_query_string_value("n")
    meeting.barrier(group, int(parties)).wait()
    return {"item": item, "seen": app.current_event.path}


def handle(event, context):
    return app.resolve(event, context)
