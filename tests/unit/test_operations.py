"""template.yaml's operations: an age alarm on every queue, a depth alarm on every dead-letter queue, and a dashboard
whose custom metrics are ones the functions really emit (their ``add_metric`` calls, read from the code)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode

from events import JobStatus
from spectra.bulk.models import BulkState
from spectra.notify.delivery import Outcome

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "RedshiftSpectra"


@pytest.fixture(scope="module")
def resources() -> dict:
    body, matches = decode(str(ROOT / "template.yaml"))
    assert not matches, matches
    return json.loads(json.dumps(body["Resources"]))


def of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def queue_of(alarm: dict) -> str | None:
    (dimension,) = alarm["Properties"]["Dimensions"]
    value = dimension["Value"]
    return value["Fn::GetAtt"][0] if dimension["Name"] == "QueueName" and "Fn::GetAtt" in value else None


def alarmed(resources: dict, metric: str) -> dict[str, dict]:
    return {
        queue_of(alarm): alarm
        for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == "AWS/SQS" and alarm["Properties"]["MetricName"] == metric
    }


def dead_letter_queues(resources: dict) -> set[str]:
    """The DLQs of the queues' consumers (RedrivePolicy) and of the EventBridge rules' targets (DeadLetterConfig)."""
    return {
        queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for queue in of_type(resources, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in queue.get("Properties", {})
    } | {
        target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
        for rule in of_type(resources, "AWS::Events::Rule").values()
        for target in rule["Properties"].get("Targets", [])
        if "DeadLetterConfig" in target
    }


def test_every_rule_target_has_a_dead_letter_queue(resources):
    """An event EventBridge cannot deliver (after retrying for up to a day) is dropped unless its target has a DLQ:
    for the notify rule that is a job event no webhook or SNS message ever announces, with nothing to alarm on."""
    targets = {
        (name, target["Id"]): target
        for name, rule in of_type(resources, "AWS::Events::Rule").items()
        for target in rule["Properties"].get("Targets", [])
    }
    assert len(targets) >= 2
    assert [key for key, target in targets.items() if "DeadLetterConfig" not in target] == []
    for target in targets.values():  # a DLQ of its own, so each can be redriven to its target queue
        dead_letter = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
        tags = {t["Key"]: t["Value"] for t in resources[dead_letter]["Properties"]["Tags"]}
        assert tags["spectra:redrive-to"] == target["Arn"]["Fn::GetAtt"][0]


def test_every_queue_has_an_alarm_on_the_age_of_its_oldest_message(resources):
    queues = set(of_type(resources, "AWS::SQS::Queue"))
    alarms = alarmed(resources, "ApproximateAgeOfOldestMessage")
    assert queues <= set(alarms), f"queues without an age alarm: {sorted(queues - set(alarms))}"
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_every_dead_letter_queue_has_a_depth_alarm(resources):
    dead_letters = dead_letter_queues(resources)
    assert len(dead_letters) >= 8
    alarms = alarmed(resources, "ApproximateNumberOfMessagesVisible")
    assert dead_letters <= set(alarms), f"DLQs without a depth alarm: {sorted(dead_letters - set(alarms))}"
    assert all(alarms[q]["Properties"]["Threshold"] == 0 for q in dead_letters)


# -- the dashboard ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard(resources) -> dict:
    (board,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    text = board["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{([^}]+)\}", r"SUB<\1>", text))  # placeholders keep the names they stand for


def dashboard_metrics(dashboard: dict) -> list[tuple[str, str, str, str]]:
    """(widget title, namespace, metric, dimension value) of every metric line."""
    return [
        (widget["properties"]["title"], line[0], line[1], line[3])
        for widget in dashboard["widgets"]
        for line in widget["properties"]["metrics"]
    ]


def emitted_metric_names() -> tuple[set[str], list[re.Pattern]]:
    """What the functions can emit: ``add_metric(name=...)`` in producers/ and consumers/. A literal (or either
    literal of a conditional) is itself; a name from a variable is any string key or value of the module's dict
    literals (the tables the handlers loop over); an f-string is a pattern whose placeholder must be an enum value
    the code formats there (a job status, a bulk state, a delivery outcome)."""
    literals: set[str] = set()
    patterns: list[re.Pattern] = []
    for path in [*ROOT.glob("producers/**/*.py"), *ROOT.glob("consumers/**/*.py")]:
        tree = ast.parse(path.read_text())
        tables = {
            c.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Dict)
            for c in [*node.keys, *node.values]
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        }
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)

        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "add_metric":
                name = next(k.value for k in call.keywords if k.arg == "name")
                _collect(name, assigned, tables, literals, patterns)
    return literals, patterns


def _collect(name: ast.expr, assigned: dict, tables: set[str], literals: set[str], patterns: list) -> None:
    if isinstance(name, ast.Constant):
        literals.add(name.value)
    elif isinstance(name, ast.IfExp):
        for branch in (name.body, name.orelse):
            _collect(branch, assigned, tables, literals, patterns)
    elif isinstance(name, ast.Name):
        if name.id in assigned:  # name = "..." if ... else f"..."
            for value in assigned[name.id]:
                _collect(value, assigned, tables, literals, patterns)
        else:  # a loop variable over one of the module's tables
            literals.update(tables)
    elif isinstance(name, ast.JoinedStr):
        parts = [re.escape(p.value) if isinstance(p, ast.Constant) else "(?P<v>[A-Za-z]+)" for p in name.values]
        patterns.append(re.compile("^" + "".join(parts) + "$"))


ENUM_WORDS = {
    form
    for enum in (JobStatus, BulkState, Outcome)
    for member in enum
    for form in (member.value, member.value.title(), member.value.title().replace("_", ""))
}


def is_emitted(name: str, literals: set[str], patterns: list[re.Pattern]) -> bool:
    if name in literals:
        return True
    return any((match := p.match(name)) and match.group("v") in ENUM_WORDS for p in patterns)


def test_the_dashboards_custom_metrics_are_ones_the_functions_emit(dashboard):
    literals, patterns = emitted_metric_names()
    assert {"StatementsStarted", "TopicMessagesPublished", "ReconcileErrors", "JobQueuedMs"} <= literals
    assert is_emitted("JobsCompleted", literals, patterns) and not is_emitted("JobsDone", literals, patterns)
    custom = {metric for _, namespace, metric, _ in dashboard_metrics(dashboard) if namespace == NAMESPACE}
    assert len(custom) >= 15
    assert {m for m in custom if not is_emitted(m, literals, patterns)} == set()


def test_every_metric_the_functions_emit_is_on_the_dashboard(dashboard):
    """The reverse: a metric nothing shows is found only in Metrics Explorer (S3 drops, bulk result files and
    dropped webhook deliveries were; found by the observability review)."""
    literals, patterns = emitted_metric_names()
    literals -= {"completed", "requeued", "expired", "errors", "deliveries", "outcomes", "summary"}  # table keys
    shown = {metric for _, namespace, metric, _ in dashboard_metrics(dashboard) if namespace == NAMESPACE}
    assert sorted(literals - shown) == []
    webhook = {f"Webhook{outcome.value.title().replace('_', '')}" for outcome in Outcome}
    jobs = {f"Jobs{status.value.title()}" for status in JobStatus if status.is_terminal}
    bulk = {f"BulkJobs{state.value}" for state in BulkState if state.is_terminal}
    for names in (webhook, jobs, bulk):
        assert all(any(p.match(n) for p in patterns) for n in names)  # what the f-strings make
        assert sorted(names - shown) == []


def test_the_dashboard_shows_states_latency_deliveries_retries_and_every_queue(dashboard, resources):
    titles = " | ".join(widget["properties"]["title"] for widget in dashboard["widgets"]).lower()
    topics = ("jobs by state", "bulk jobs by state", "latency by stage", "deliveries", "retries")
    for topic in (*topics, "dead-letter queue depth", "age"):
        assert topic in titles
    lines = dashboard_metrics(dashboard)
    queues = set(of_type(resources, "AWS::SQS::Queue"))
    dead_letters = dead_letter_queues(resources)
    depth = {dim for _, ns, metric, dim in lines if ns == "AWS/SQS" and metric == "ApproximateNumberOfMessagesVisible"}
    age = {dim for _, ns, metric, dim in lines if ns == "AWS/SQS" and metric == "ApproximateAgeOfOldestMessage"}
    assert {f"SUB<{q}.QueueName>" for q in dead_letters} <= depth
    assert {f"SUB<{q}.QueueName>" for q in queues - dead_letters} <= age
    referenced = {re.fullmatch(r"SUB<(\w+)\.QueueName>", dim).group(1) for dim in depth | age}
    assert referenced <= queues  # no metric of a queue the template does not have
    assert all(dim == "spectra" for _, ns, _, dim in lines if ns == NAMESPACE)  # Powertools' service dimension


def test_jobs_by_state_counts_each_ending_once_whoever_wrote_it(monkeypatch):
    """JobsCompleted/Failed/Cancelled come from the notifier, which every terminal job event reaches: a job the
    executor failed, the API cancelled or the reconciler finished is counted as one the completion consumer ended
    (which counted only its own, so FAILED showed nothing of statements the Data API refused)."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from consumers.notifier import app as notifier
    from tests.unit.fakes import make_notify, make_ports

    monkeypatch.setattr(notifier, "get_ports", lambda: make_ports(notify=make_notify()))
    notifier.metrics.clear_metrics()
    samples = ROOT / "events" / "samples"
    for name in ("job_failed_event.json", "job_cancelled_event.json", "job_completed_event.json"):
        notifier.record_handler(SQSRecord({"messageId": name, "body": (samples / name).read_text()}))
    for name in ("bulk_job_completed_event.json", "bulk_job_failed_event.json", "bulk_job_aborted_event.json"):
        notifier.record_handler(SQSRecord({"messageId": name, "body": (samples / name).read_text()}))
    counted = {name: sum(metric["Value"]) for name, metric in notifier.metrics.metric_set.items()}
    notifier.metrics.clear_metrics()
    assert (counted["JobsFailed"], counted["JobsCancelled"], counted["JobsCompleted"]) == (1, 1, 1)
    assert (counted["BulkJobsJobComplete"], counted["BulkJobsFailed"], counted["BulkJobsAborted"]) == (1, 1, 1)
    for prefix in ('add_metric(name=f"Jobs{', 'add_metric(name=f"BulkJobs{'):
        modules = [path for path in ROOT.glob("consumers/**/*.py") if prefix in path.read_text()]
        assert modules == [ROOT / "consumers" / "notifier" / "app.py"]  # one place, so no ending is counted twice


def test_the_executor_counts_bulk_starts_apart_from_query_starts(monkeypatch):
    """StatementsStarted, the jobs-by-state chart's "started" between JobsSubmitted and the endings (query jobs all),
    counted bulk loads and drops too: more started than were ever submitted (the operations review)."""
    from consumers.executor import app as executor
    from spectra import lifecycle
    from spectra.jobs import Job, new_job_id, utcnow
    from tests.unit.test_bulk_lifecycle import bulk_ports_with, queued

    ports = bulk_ports_with()
    monkeypatch.setattr(executor, "get_ports", lambda: ports)
    now = utcnow()
    query = Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql="select 1", created_at=now, updated_at=now
    )
    ports.jobs.create(query)
    executor.metrics.clear_metrics()
    executor.handle_job_message(queued(ports), 1)
    executor.handle_job_message(lifecycle.queued_message(query), 1)
    executor.handle_job_message(lifecycle.queued_message(query), 2)  # a copy: the job started already
    counted = {name: sum(metric["Value"]) for name, metric in executor.metrics.metric_set.items()}
    executor.metrics.clear_metrics()
    assert counted == {
        "BulkJobsStarted": 1,
        "StatementsStarted": 1,
        "JobMessagesSkipped": 1,
        "JobMessagesRedelivered": 1,
    }


def test_an_event_detail_the_notifier_cannot_read_is_fanned_out_once_without_figures(monkeypatch):
    """A detail with a value a newer producer added (a rolling deploy: a status this version does not know) failed
    the record after its webhooks were sent and it was published: each of the queue's five receives sent it all
    again, then it went to the DLQ. (A field added is read, and ignored: tests/unit/test_contracts.py.)"""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from consumers.notifier import app as notifier
    from tests.unit.test_notify import ports_with_notify, sample_event, subscribe

    ports = ports_with_notify()
    monkeypatch.setattr(notifier, "get_ports", lambda: ports)
    subscribe(ports)
    event = sample_event(queue_ms=12, status="ARCHIVED")
    notifier.metrics.clear_metrics()
    notifier.record_handler(SQSRecord({"messageId": "m1", "body": event.model_dump_json(by_alias=True)}))
    counted = set(notifier.metrics.metric_set)
    notifier.metrics.clear_metrics()
    assert len(ports.notify.topic.published) == 1 and len(ports.notify.transport.posts) == 1
    assert json.loads(ports.notify.transport.posts[0].body)["data"]["queue_ms"] == 12
    assert counted == {"WebhookDelivered", "TopicMessagesPublished"}


def test_a_reconciler_failing_as_a_whole_is_alarmed(resources):
    """ReconcileErrors is emitted only by a sweep that ran; a sweep that raises (or times out) emits nothing, and the
    alarm on it treats missing data as fine. The schedule-invoked function has no queue or DLQ to alarm instead."""
    watched = {
        alarm["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if (alarm["Properties"]["Namespace"], alarm["Properties"]["MetricName"]) == ("AWS/Lambda", "Errors")
    }
    scheduled = {
        name
        for name, function in of_type(resources, "AWS::Serverless::Function").items()
        if any(e["Type"] == "Schedule" for e in function["Properties"].get("Events", {}).values())
    }
    assert scheduled == {"ReconcilerFunction"}
    assert scheduled <= watched


def test_a_reconciler_that_does_not_run_at_all_is_alarmed(resources):
    """Every other reconciler alarm watches a metric a run emits, and treats its absence as fine: with the schedule
    disabled or its invocations throttled away, nothing alarmed (operations review). Each scheduled function's
    invocations are watched with missing data breaching."""
    scheduled = {
        name
        for name, function in of_type(resources, "AWS::Serverless::Function").items()
        if any(e["Type"] == "Schedule" for e in function["Properties"].get("Events", {}).values())
    }
    watched = {
        alarm["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if (alarm["Properties"]["Namespace"], alarm["Properties"]["MetricName"]) == ("AWS/Lambda", "Invocations")
        and alarm["Properties"]["TreatMissingData"] == "breaching"
        and alarm["Properties"]["ComparisonOperator"] == "LessThanThreshold"
    }
    assert scheduled and scheduled <= watched


def test_a_reconciler_whose_every_run_stops_early_is_alarmed(resources, monkeypatch, capsys):
    """Each run emits ReconcileStoppedEarly 1 (throttled or out of time) or 0; the alarm averages a period's runs, so
    it fires when every run of 15 minutes stopped early, however many runs a period holds (a Sum of 5 per period
    flapped: runs are stamped when they end, not every 60 s; diff review)."""
    from consumers.reconciler import app as reconciler
    from spectra.reconciliation import ReconcileSummary

    alarm = resources["ReconcilerBehindAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (NAMESPACE, "ReconcileStoppedEarly")
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Average",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 900

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "reconciler", 512, "r1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:reconciler"

        def get_remaining_time_in_millis(self):
            return 60_000

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)  # the template's Globals
    monkeypatch.setattr(reconciler.metrics, "namespace", NAMESPACE)
    emitted = []
    for stopped in ({"throttled": True}, {"out_of_time": True}, {}):
        monkeypatch.setattr(reconciler, "reconcile", lambda ports, deadline, s=stopped: ReconcileSummary(**s))
        monkeypatch.setattr(reconciler, "get_ports", lambda: None)
        reconciler.lambda_handler({}, Context())
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        emitted.append([v for line in lines for v in line.get("ReconcileStoppedEarly", [])])  # EMF: a list per line
    assert emitted == [[1.0], [1.0], [0.0]]
