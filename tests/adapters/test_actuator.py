"""The bolt: the logging actuator, and a relay on a GPIO pin driven through gpiozero's mock pins.

Every gpiozero device here gets an explicit mock pin factory, so gpiozero never probes for real
hardware (and never warns about falling back from it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from smartlock.adapters.actuator import (
    BoltState,
    GpioRelayActuator,
    LoggingActuator,
    open_actuator,
)

PIN = 17


class JammablePin(MockPin):
    """A mock pin that can be told to stop following what it is driven to (a welded relay)."""

    jammed = False

    def _change_state(self, value: bool) -> bool:
        if self.jammed:
            return False
        return super()._change_state(value)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pins = MockFactory(pin_class=JammablePin)
    yield pins
    pins.close()


@pytest.fixture
def relay(factory: MockFactory) -> Iterator[GpioRelayActuator]:
    actuator = GpioRelayActuator(PIN, pin_factory=factory)
    yield actuator
    actuator.close()


def pin_of(factory: MockFactory, number: int = PIN) -> JammablePin:
    pin: JammablePin = factory.pin(number)
    return pin


# --- logging actuator -------------------------------------------------------------------------


def test_logging_actuator_starts_locked_without_movements() -> None:
    bolt = LoggingActuator()
    assert bolt.state is BoltState.LOCKED
    assert bolt.movements == []


def test_logging_actuator_records_each_movement_and_the_resulting_state() -> None:
    bolt = LoggingActuator()
    assert bolt.unlock() is BoltState.UNLOCKED
    assert bolt.state is BoltState.UNLOCKED
    assert bolt.lock() is BoltState.LOCKED
    assert bolt.unlock() is BoltState.UNLOCKED
    assert bolt.movements == [BoltState.UNLOCKED, BoltState.LOCKED, BoltState.UNLOCKED]
    bolt.close()
    assert bolt.movements == [BoltState.UNLOCKED, BoltState.LOCKED, BoltState.UNLOCKED]


def test_logging_actuator_logs_the_movement(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="smartlock.adapters.actuator")
    LoggingActuator().unlock()
    assert "bolt driven: UNLOCKED" in caplog.messages


# --- GPIO relay ---------------------------------------------------------------------------------


def test_relay_starts_released_and_locked(factory: MockFactory, relay: GpioRelayActuator) -> None:
    assert pin_of(factory).function == "output"
    assert pin_of(factory).state is False
    assert relay.state is BoltState.LOCKED


def test_relay_unlock_energises_the_pin(factory: MockFactory, relay: GpioRelayActuator) -> None:
    assert relay.unlock() is BoltState.UNLOCKED
    assert pin_of(factory).state is True
    assert relay.state is BoltState.UNLOCKED


def test_relay_lock_releases_the_pin(factory: MockFactory, relay: GpioRelayActuator) -> None:
    relay.unlock()
    assert relay.lock() is BoltState.LOCKED
    assert pin_of(factory).state is False
    assert relay.state is BoltState.LOCKED


def test_relay_close_releases_an_energised_pin_fail_secure(factory: MockFactory) -> None:
    relay = GpioRelayActuator(PIN, pin_factory=factory)
    relay.unlock()
    assert pin_of(factory).state is True
    relay.close()
    assert pin_of(factory).state is False


def test_active_low_relay_drives_the_pin_low_to_unlock(factory: MockFactory) -> None:
    relay = GpioRelayActuator(PIN, active_high=False, pin_factory=factory)
    try:
        assert pin_of(factory).state is True  # released
        relay.unlock()
        assert pin_of(factory).state is False
        assert relay.state is BoltState.UNLOCKED
        relay.lock()
        assert pin_of(factory).state is True
        relay.unlock()
    finally:
        relay.close()
    assert pin_of(factory).state is True  # closing releases it: high for an active-low relay


def test_relay_that_does_not_switch_on_makes_unlock_fail_and_stays_locked(
    factory: MockFactory, relay: GpioRelayActuator
) -> None:
    pin_of(factory).jammed = True
    with pytest.raises(RuntimeError, match="relay did not switch to UNLOCKED"):
        relay.unlock()
    assert relay.state is BoltState.LOCKED
    assert pin_of(factory).state is False


def test_relay_that_does_not_switch_off_makes_lock_fail_and_reports_unlocked(
    factory: MockFactory, relay: GpioRelayActuator
) -> None:
    relay.unlock()
    pin_of(factory).jammed = True  # welded shut: the bolt really is still open
    with pytest.raises(RuntimeError, match="relay did not switch to LOCKED"):
        relay.lock()
    assert relay.state is BoltState.UNLOCKED
    assert pin_of(factory).state is True


# --- open_actuator --------------------------------------------------------------------------


def test_open_actuator_log_gives_a_fresh_logging_actuator() -> None:
    first, second = open_actuator("log"), open_actuator("log")
    assert isinstance(first, LoggingActuator)
    assert first is not second


def test_open_actuator_gpio_drives_the_named_pin(
    factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # open_actuator cannot take a pin factory: make the mock one gpiozero's default instead
    monkeypatch.setattr(Device, "pin_factory", factory)
    bolt = open_actuator("gpio:17")
    try:
        assert isinstance(bolt, GpioRelayActuator)
        bolt.unlock()
        assert pin_of(factory, 17).state is True
    finally:
        bolt.close()
    assert pin_of(factory, 17).state is False


@pytest.mark.parametrize("spec", ["nope", "gpio", "LOG", ""])
def test_open_actuator_refuses_unknown_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=f"unknown actuator {spec!r}: use 'log' or 'gpio:PIN'"):
        open_actuator(spec)
