"""Wait behaviour no test held before (found by mutation testing spectra/waits.py): a failed give-back's warning
carries its error, and a tenant with no record waits under the service's cap. The wait leases' own behaviour, pinned
by the same run, is in ``tests/integration/pipeline/test_wait_leases_pins.py`` (on DynamoDB)."""

from __future__ import annotations

import logging

import pytest

from spectra.errors import TooManyWaits
from spectra.waits import waiting_room
from tests.unit.fakes import make_ports, make_settings
from tests.unit.test_waits import ports_with

pytestmark = pytest.mark.unit


def test_a_failed_give_back_is_logged_with_its_error(caplog):
    """The lease that could not be given back ends on its own; the warning carries the error that stopped it, so an
    operator sees why (here the connection), not only that it happened."""
    ports = ports_with("acme", service_cap=1)

    def broken(tenant_id: str, lease_id: str) -> None:
        raise OSError("connection reset")

    ports.waits.give_back = broken
    with caplog.at_level(logging.WARNING, logger="spectra.waits"), waiting_room(ports, "acme", seconds=28):
        pass
    [record] = caplog.records
    assert "acme" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)
    assert "connection reset" in caplog.text


def test_a_tenant_without_a_record_is_capped_by_the_services_max_waits():
    """A caller whose tenant the directory holds no record of (as the running cap's test_share has it: the service
    default) waits under TENANT_MAX_WAITS, not a 500 for reading a cap off no record."""
    ports = make_ports(settings=make_settings(tenant_max_waits=1))
    with waiting_room(ports, "acme", seconds=28):
        with pytest.raises(TooManyWaits) as refused, waiting_room(ports, "acme", seconds=28):
            pytest.fail("a second wait got in")
        assert refused.value.details == {"max_waits": 1}
