"""The command lines a newcomer pastes, the banner's (local/__main__.py) and README's: the variables they set on the
line are ones the project's tools read (its AWS CLI is v1, on the same botocore as boto3)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import botocore.session
import pytest

from local.__main__ import banner

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def region_read(line: str, monkeypatch, tmp_path) -> str | None:
    """The region botocore (boto3, and AWS CLI v1) resolves on a fresh machine (no profile) for ``line``'s leading
    ``NAME=value`` words."""
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for word in shlex.split(line.rstrip().removesuffix("\\")):  # a README line may end in a continuation
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
            break
        name, _, value = word.partition("=")
        monkeypatch.setenv(name, value)
    return botocore.session.Session().get_config_variable("region")


def test_the_banners_aws_cli_line_sets_a_region_the_cli_reads(monkeypatch, tmp_path):
    """Found by the newcomer review: the line set AWS_REGION, which neither AWS CLI v1 nor boto3 reads. `s3 cp`
    worked only because S3 falls back to us-east-1; the same prefix before `sqs` or `dynamodb` said "You must specify
    a region"."""
    stack = SimpleNamespace(api_url="http://127.0.0.1:3000", physical_id=lambda name: f"physical-{name}")
    aws = SimpleNamespace(endpoint_url="http://127.0.0.1:4566", region="eu-west-1")
    demo = SimpleNamespace(
        tenant_id="acme", other_tenant_id="globex", api_key="spk_a", other_api_key="spk_b", bulk_table="contacts"
    )
    lines = [line.strip() for line in banner(stack, aws, "http://127.0.0.1:4567", demo).splitlines()]
    (line,) = [line for line in lines if " s3 cp " in line]
    assert region_read(line, monkeypatch, tmp_path) == "eu-west-1", line


@pytest.mark.parametrize(
    "line",
    [line for line in (ROOT / "README.md").read_text().splitlines() if re.match(r"AWS_[A-Z_]*=\S+ ", line)],
)
def test_each_readme_line_that_sets_aws_variables_sets_a_region_the_tools_read(line, monkeypatch, tmp_path):
    """Found by the newcomer review: README's S3 drop and dead-letter queue lines set AWS_REGION: `spectra.admin
    --stack` printed "You must specify a region" (or looked for the stack in a profile's region)."""
    assert region_read(line, monkeypatch, tmp_path) == "us-east-1", line
