"""Each tenant's cap on one-call queries waiting at once (spectra/waits.py), on the domain's fakes."""

from __future__ import annotations

import pytest

from spectra import waits
from spectra.errors import TooManyWaits
from tests.unit.fakes import make_ports, make_settings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ports_with(tenant_id: str = "acme", *, max_waits: int | None = None, service_cap: int = 2):
    ports = make_ports(settings=make_settings(tenant_max_waits=service_cap))
    ports.tenants.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}", max_waits=max_waits)
    return ports


def test_a_tenant_at_its_cap_is_refused_and_others_are_not():
    ports = ports_with("acme", service_cap=2)
    ports.tenants.create_tenant("globex", db_user="tenant_globex")
    clock = Clock(1000.0)
    with (
        waits.waiting_room(ports, "acme", seconds=28, clock=clock),
        waits.waiting_room(ports, "acme", seconds=28, clock=clock),
    ):
        with pytest.raises(TooManyWaits) as refused, waits.waiting_room(ports, "acme", seconds=28, clock=clock):
            pytest.fail("a third wait got in")
        assert refused.value.details == {"max_waits": 2}
        assert refused.value.status == 429 and refused.value.retry_after == 1
        with waits.waiting_room(ports, "globex", seconds=28, clock=clock):
            assert len(ports.waits.held("globex")) == 1
        assert len(ports.waits.held("acme")) == 2
    assert ports.waits.held("acme") == {}  # every lease given back
    assert ports.waits.held("globex") == {}


def test_the_tenants_own_cap_overrides_the_service_one():
    ports = ports_with("acme", max_waits=1, service_cap=5)
    with (
        waits.waiting_room(ports, "acme", seconds=28),
        pytest.raises(TooManyWaits),
        waits.waiting_room(ports, "acme", seconds=28),
    ):
        pytest.fail("a second wait got in")


def test_the_lease_is_given_back_when_the_request_fails():
    ports = ports_with("acme", service_cap=1)
    with pytest.raises(RuntimeError), waits.waiting_room(ports, "acme", seconds=28):
        raise RuntimeError("the job store failed")
    assert ports.waits.held("acme") == {}
    with waits.waiting_room(ports, "acme", seconds=28):
        pass


def test_a_lease_ends_on_its_own_when_it_is_not_given_back():
    """The environment died mid-wait: its lease stops counting at its end, the wait plus the request's margin."""
    ports = ports_with("acme", service_cap=1)
    clock = Clock(1000.0)
    room = waits.waiting_room(ports, "acme", seconds=28, clock=clock)
    room.__enter__()  # and never exits
    assert list(ports.waits.held("acme").values()) == [1028.0]
    clock.now = 1028.0 + waits.CLOCK_MARGIN_SECONDS - 0.1  # another host's clock may run ahead of the holder's
    with pytest.raises(TooManyWaits), waits.waiting_room(ports, "acme", seconds=28, clock=clock):
        pass
    clock.now = 1028.0 + waits.CLOCK_MARGIN_SECONDS
    with waits.waiting_room(ports, "acme", seconds=28, clock=clock):
        pass


def test_a_host_whose_clock_runs_ahead_does_not_take_the_room_of_a_wait_still_running():
    """The lease's end is the holder's clock's; the API environment that next takes one reads its own, which may run
    seconds ahead. At real time 1024 the holder (clock 1000 when it took its lease, 25 s left) still runs for a
    second, and holds the tenant's only wait: a host 3 s ahead reads 1027, past the lease's end, and must not count
    it as ended (else two waits run where the cap allows one)."""
    ports = ports_with("acme", service_cap=1)
    with waits.waiting_room(ports, "acme", seconds=25, clock=Clock(1000.0)):
        with pytest.raises(TooManyWaits), waits.waiting_room(ports, "acme", seconds=25, clock=Clock(1027.0)):
            pytest.fail("a second wait got in while the first one still ran")
        assert len(ports.waits.held("acme")) == 1


def test_a_failed_give_back_does_not_fail_the_answer(caplog):
    ports = ports_with("acme", service_cap=1)

    def broken(tenant_id: str, lease_id: str) -> None:
        raise OSError("connection reset")

    ports.waits.give_back = broken
    with waits.waiting_room(ports, "acme", seconds=28):
        pass
    assert "a wait lease was not given back" in caplog.text
