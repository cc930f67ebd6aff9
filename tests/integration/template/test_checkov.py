"""checkov passes on template.yaml with zero failed checks, and every check it skips is skipped on its resource, in the
template, with the reason written next to it.

checkov runs offline (``--skip-download``) from its own venv (.checkov-venv, created by ``make install``): it pins a
boto3 that clashes with the project's. A second run on a copy of the template with one control removed proves the
scan is real: the same command then fails, naming that resource.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cfnlint.decode import decode

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
CHECKOV = ROOT / ".checkov-venv" / "bin" / "checkov"


def checkov(template: Path) -> dict:
    """checkov's JSON report on ``template``, with the options `make lint` uses."""
    assert CHECKOV.exists(), "checkov lives in its own venv (.checkov-venv); `make install` creates it"
    command = [str(CHECKOV), "--file", str(template), "--framework", "cloudformation", "--skip-download", "--compact"]
    result = subprocess.run(
        [*command, "--output", "json"], capture_output=True, text=True, timeout=180, cwd=template.parent
    )
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]  # 1 = some check failed
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def failures(report: dict) -> list[tuple[str, str]]:
    return [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]


def test_checkov_finds_nothing_and_every_skip_says_why():
    report = checkov(TEMPLATE)
    body, _ = decode(str(TEMPLATE))
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] == len(body["Resources"])  # every resource was looked at
    assert summary["failed"] == 0, failures(report)
    assert summary["passed"] > 0

    skipped = report["results"]["skipped_checks"]
    for check in skipped:
        comment = check["check_result"].get("suppress_comment") or ""
        assert len(comment.split()) >= 5, (check["check_id"], check["resource"], comment)
    # the skips checkov honoured are exactly the ones written in the template (none from the command line)
    written = {
        (skip["id"], f"{resource['Type']}.{name}")
        for name, resource in body["Resources"].items()
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", [])
    }
    assert {(c["check_id"], c["resource"]) for c in skipped} == written


def test_checkov_fails_the_template_without_its_access_log_or_the_executors_reason(tmp_path):
    body, _ = decode(str(TEMPLATE))
    del body["Resources"]["Api"]["Properties"]["AccessLogSetting"]
    executor = body["Resources"]["ExecutorFunction"]["Metadata"]["checkov"]
    executor["skip"] = [s for s in executor["skip"] if s["id"] != "CKV_AWS_115"]
    broken = tmp_path / "template.json"  # checkov reads JSON templates too; the copy differs by these two edits only
    broken.write_text(json.dumps(body))

    assert set(failures(checkov(broken))) == {
        ("CKV_AWS_76", "AWS::Serverless::Api.Api"),
        ("CKV_AWS_115", "AWS::Serverless::Function.ExecutorFunction"),
    }
