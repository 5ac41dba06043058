"""The bolt, behind one interface: a logging actuator (default) or a relay on a GPIO pin.

A security lock is never optimistic: the state it reports is the one the actuator confirms.
"""

from __future__ import annotations

import logging
import warnings
from enum import StrEnum
from typing import Any, Protocol

from smartlock.core.errors import ConfigError

logger = logging.getLogger(__name__)


class BoltState(StrEnum):
    LOCKED = "LOCKED"
    UNLOCKED = "UNLOCKED"


class Actuator(Protocol):
    state: BoltState

    def unlock(self) -> BoltState: ...

    def lock(self) -> BoltState: ...

    def close(self) -> None: ...


class LoggingActuator:
    """No hardware: records and logs every movement of an imaginary bolt."""

    def __init__(self) -> None:
        self.state = BoltState.LOCKED
        self.movements: list[BoltState] = []

    def _move(self, state: BoltState) -> BoltState:
        self.state = state
        self.movements.append(state)
        logger.info("bolt driven: %s", state.value)
        return state

    def unlock(self) -> BoltState:
        return self._move(BoltState.UNLOCKED)

    def lock(self) -> BoltState:
        return self._move(BoltState.LOCKED)

    def close(self) -> None:
        """Nothing to release."""


class GpioRelayActuator:
    """A relay on a GPIO pin (gpiozero): energised = unlocked; released on close (fail-secure)."""

    def __init__(
        self, pin: int | str, *, active_high: bool = True, pin_factory: Any = None
    ) -> None:
        from gpiozero import DigitalOutputDevice, GPIOZeroError  # lazy: only relays need it
        from gpiozero.exc import PinFactoryFallback

        try:
            with warnings.catch_warnings():  # one clear error below instead of four warnings
                warnings.simplefilter("ignore", PinFactoryFallback)
                self._relay = DigitalOutputDevice(
                    pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
                )
        except GPIOZeroError as exc:
            raise ConfigError(
                f"cannot drive GPIO pin {pin}: {exc} (is this a board with GPIO, and is a pin "
                "library such as lgpio installed?)"
            ) from None
        self.state = BoltState.LOCKED

    def _confirm(self, expected: bool, state: BoltState) -> BoltState:
        if bool(self._relay.value) != expected:
            raise RuntimeError(f"relay did not switch to {state.value}")
        self.state = state
        logger.info("relay %s: %s", self._relay.pin, state.value)
        return state

    def unlock(self) -> BoltState:
        self._relay.on()
        return self._confirm(True, BoltState.UNLOCKED)

    def lock(self) -> BoltState:
        self._relay.off()
        return self._confirm(False, BoltState.LOCKED)

    def close(self) -> None:
        self._relay.off()
        self._relay.close()


def open_actuator(spec: str) -> Actuator:
    """``log`` (default) or ``gpio:PIN`` (e.g. ``gpio:17``)."""
    if spec == "log":
        return LoggingActuator()
    if spec.startswith("gpio:"):
        return GpioRelayActuator(spec.removeprefix("gpio:"))
    raise ValueError(f"unknown actuator {spec!r}: use 'log' or 'gpio:PIN'")
