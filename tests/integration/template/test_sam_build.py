"""`sam build` produces deployable artifacts: small code packages, one dependency layer under Lambda's size limit.

It runs the Makefile's build targets exactly as a deploy does (downloading the arm64 wheels from PyPI), in a
temporary build folder, in source as samconfig.toml asks (a scratch copy of the checkout would carry .venv).
"""

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SAM = ROOT / ".sam-venv" / "bin" / "sam"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.mark.timeout(900)  # downloads the arm64 wheels; pytest's default 300 s is tight on a slow mirror
def test_sam_build(tmp_path):
    assert SAM.exists(), "aws-sam-cli lives in its own venv (.sam-venv); `make install` creates it"
    build = tmp_path / "build"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [
            str(SAM),
            "build",
            "--build-in-source",
            "--template-file",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    layer = build / "DependenciesLayer" / "python"
    assert (layer / "pyarrow").is_dir() and (layer / "aws_lambda_powertools").is_dir()
    functions = [p for p in build.iterdir() if p.is_dir() and p.name.endswith("Function")]
    assert len(functions) >= 5
    for function in functions:
        assert {p.name for p in function.iterdir()} == {"spectra", "events", "producers", "consumers"}, function
        assert not list(function.rglob("__pycache__"))
        assert size_of(layer) + size_of(function) < LAMBDA_UNZIPPED_LIMIT, function.name
