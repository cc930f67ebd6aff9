"""A local Redshift Data API: boto3's ``redshift-data`` client against a real PostgreSQL.

    from local.redshift_data import EmulatorConfig, start_emulator
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=moto_url))
    client = boto3.client("redshift-data", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    ...
    emulator.stop()

Or from a shell: ``python -m local.redshift_data --port 0``.
"""

from .config import EmulatorConfig, EmulatorSettings
from .server import Emulator, start_emulator

__all__ = ["Emulator", "EmulatorConfig", "EmulatorSettings", "start_emulator"]
