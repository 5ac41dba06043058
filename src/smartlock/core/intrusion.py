"""Failed attempts, counted per subject, and the lockouts they cause (README, "Security model").

A subject is whoever the failures are charged to: ``"user:alice"`` at the backend, the lock
itself at a lock.  The caller records every counted refusal (a bad signature, a replay: remote
errors, :mod:`smartlock.core.errors`), and asks
:meth:`IntrusionDetector.locked_until` before it even looks at a subject's next attempt.

Rules:

* a failure counts for ``window_s`` seconds, the edge included: at ``t + window_s`` a failure
  from ``t`` still counts, a moment later it does not;
* **more than** ``threshold`` failures counted at once lock the subject out for ``lockout_s``
  seconds: with the defaults (3, 300 s, 300 s) the 4th failure within 5 minutes does.  The
  lockout ends at ``lockout_until`` exactly: the subject is locked out while ``now <
  lockout_until``;
* failures during a lockout are counted (``attempt`` grows, for the audit log) but neither
  restart nor extend it.  The lockout has one end, announced once, which an alert can quote; an
  owner who tries again and again while locked out is not kept out longer for it, and one
  lockout is one alert, not one per try.  Those failures still count in the window afterwards,
  so a subject that kept failing during its lockout is locked out again by its next failure;
* :meth:`IntrusionDetector.record_success` clears the subject's failures (not a lockout in
  force); smartlock's services do not call it: the rule is "more than N failures within the
  window", so a success in between (e.g. a resident's, at a lock) must not hide an attacker's;
* a lockout never lasts more than ``lockout_s`` from any moment it is looked at: if the clock
  steps back (or a snapshot comes from a clock ahead), it is shortened to that;
* memory is bounded: at most ``capacity`` subjects, and at most ``MAX_FAILURES_KEPT`` failure
  times per subject (beyond that ``attempt`` stops growing).  When full, the subject touched
  least recently (by a failure or a success) is forgotten first, but subjects in a lockout are
  spared while any other can go: flooding the detector with made-up subjects does not lift a
  lockout, unless every subject it holds is locked out.

The state survives a restart through :meth:`IntrusionDetector.snapshot` and
:meth:`IntrusionDetector.restore`.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from dataclasses import dataclass

SNAPSHOT_FORMAT = "smartlock-intrusion"
SNAPSHOT_VERSION = 1
MAX_FAILURES_KEPT = 100


@dataclass(frozen=True)
class FailureVerdict:
    """What one failure did to its subject."""

    attempt: int  # failures of this subject within the window, this one included
    lockout_until: float | None  # set only on the failure that starts a lockout
    locked_out: bool  # the subject is locked out after this failure


class _Subject:
    __slots__ = ("failures", "locked_until")

    def __init__(self, max_failures: int) -> None:
        self.failures: deque[float] = deque(maxlen=max_failures)  # oldest first
        self.locked_until: float | None = None


class IntrusionDetector:
    """Counts failures per subject in a sliding window and locks out a subject that has too many.

    :param threshold: failures a subject may have within the window; one more locks it out.
    :param window_s: how long a failure counts, in seconds.
    :param lockout_s: how long a lockout lasts, in seconds.
    :param capacity: how many subjects are remembered at most.
    """

    def __init__(
        self,
        *,
        threshold: int = 3,
        window_s: float = 300,
        lockout_s: float = 300,
        capacity: int = 10_000,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"an intrusion detector needs threshold >= 1, not {threshold}")
        if not (0 < window_s < math.inf):
            raise ValueError(f"an intrusion detector needs a finite window_s > 0, not {window_s}")
        if not (0 < lockout_s < math.inf):
            raise ValueError(f"an intrusion detector needs a finite lockout_s > 0, not {lockout_s}")
        if capacity < 1:
            raise ValueError(f"an intrusion detector needs capacity >= 1, not {capacity}")
        self._threshold = threshold
        self._window_s = float(window_s)
        self._lockout_s = float(lockout_s)
        self._capacity = capacity
        self._max_failures = max(MAX_FAILURES_KEPT, threshold + 1)
        self._subjects: OrderedDict[str, _Subject] = OrderedDict()  # least recently touched first

    def __len__(self) -> int:
        """How many subjects are remembered."""
        return len(self._subjects)

    def record_failure(self, subject: str, now: float) -> FailureVerdict:
        """Count one failure of ``subject`` at ``now`` and say whether it is locked out."""
        state = self._subjects.pop(subject, None) or _Subject(self._max_failures)
        self._subjects[subject] = state
        self._forget_old_failures(state, now)
        state.failures.append(now)
        attempt = len(state.failures)
        if self._lockout_end(state, now) is not None:
            verdict = FailureVerdict(attempt, lockout_until=None, locked_out=True)
        elif attempt > self._threshold:
            state.locked_until = now + self._lockout_s
            verdict = FailureVerdict(attempt, lockout_until=state.locked_until, locked_out=True)
        else:
            verdict = FailureVerdict(attempt, lockout_until=None, locked_out=False)
        self._forget_subjects_beyond_capacity(now)
        return verdict

    def record_success(self, subject: str, now: float) -> None:
        """Clear the failures of ``subject``; a lockout in force stays."""
        state = self._subjects.get(subject)
        if state is None:
            return
        if self._lockout_end(state, now) is None:
            del self._subjects[subject]
        else:
            state.failures.clear()
            self._subjects.move_to_end(subject)

    def locked_until(self, subject: str, now: float) -> float | None:
        """When the lockout of ``subject`` ends, or None if it is not locked out at ``now``."""
        state = self._subjects.get(subject)
        return None if state is None else self._lockout_end(state, now)

    def snapshot(self) -> bytes:
        """Each subject's failures and lockout as versioned JSON, least recently touched first."""
        return json.dumps(
            {
                "format": SNAPSHOT_FORMAT,
                "version": SNAPSHOT_VERSION,
                "subjects": [
                    {"subject": name, "failures": list(s.failures), "locked_until": s.locked_until}
                    for name, s in self._subjects.items()
                ],
            },
            allow_nan=False,
        ).encode()

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a :meth:`snapshot`'s; ``ValueError`` if it is not one.

        Settings are this detector's own; a snapshot larger than ``capacity`` keeps the subjects
        touched most recently.
        """
        try:
            document = json.loads(data, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            raise ValueError(f"intrusion snapshot is not JSON: {error}") from None
        match document:
            case {"format": str(format_), "version": version, "subjects": list(entries)} if (
                format_ == SNAPSHOT_FORMAT
            ):
                if type(version) is not int or version != SNAPSHOT_VERSION:
                    raise ValueError(f"intrusion snapshot of unknown version {version!r}")
            case _:
                raise ValueError("not an intrusion snapshot")
        subjects: OrderedDict[str, _Subject] = OrderedDict()
        for entry in entries:
            name, state = self._subject_from_json(entry)
            if name in subjects:
                raise ValueError(f"intrusion snapshot lists {name!r} twice")
            subjects[name] = state
        while len(subjects) > self._capacity:
            subjects.popitem(last=False)
        self._subjects = subjects

    # --- internals -------------------------------------------------------------------------

    def _forget_old_failures(self, state: _Subject, now: float) -> None:
        while state.failures and now - state.failures[0] > self._window_s:
            state.failures.popleft()

    def _lockout_end(self, state: _Subject, now: float) -> float | None:
        """The end of the lockout in force at ``now``, clamped to ``lockout_s`` from now."""
        if state.locked_until is None:
            return None
        if now >= state.locked_until:
            state.locked_until = None
            return None
        state.locked_until = min(state.locked_until, now + self._lockout_s)
        return state.locked_until

    def _forget_subjects_beyond_capacity(self, now: float) -> None:
        while len(self._subjects) > self._capacity:
            newest = next(reversed(self._subjects))  # the subject that just failed stays
            victim = next(
                (
                    name
                    for name, state in self._subjects.items()
                    if name != newest and self._lockout_end(state, now) is None
                ),
                next(iter(self._subjects)),
            )
            del self._subjects[victim]

    def _subject_from_json(self, entry: object) -> tuple[str, _Subject]:
        match entry:
            case {"subject": str(name), "failures": list(failures), "locked_until": locked_until}:
                pass
            case _:
                raise ValueError(f"intrusion snapshot: a malformed subject entry {entry!r:.80}")
        state = _Subject(self._max_failures)
        state.failures.extend(sorted(_instant(name, t) for t in failures))
        state.locked_until = None if locked_until is None else _instant(name, locked_until)
        return name, state


def _instant(subject: str, value: object) -> float:
    match value:
        case bool() | None:  # bool is an int to isinstance, not a time to us
            instant = math.nan
        case int() | float():
            try:
                instant = float(value)
            except OverflowError:  # an int too large for a float
                instant = math.inf
        case _:
            instant = math.nan
    if not math.isfinite(instant):
        raise ValueError(
            f"intrusion snapshot: {subject!r} has a time that is not one: {value!r:.40}"
        )
    return instant


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a time")
