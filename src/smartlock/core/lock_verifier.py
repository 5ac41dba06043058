"""The lock's verifier: a small state machine over key deliveries and advertisements.

It holds the session keys the backend delivered to this lock, the highest token counter it has
accepted under each, and per guest the issue time of the newest key it retired.  Its state is
a snapshot (:meth:`LockVerifier.snapshot`) that the lock agent writes to disk *before* it drives
the bolt, so neither a replayed delivery nor a replayed advertisement works after a restart.

Rules (README, "Security model"):

* a delivery is verified (signature, lock id, validity) by :func:`open_lock_delivery` and then
  refused as a replay if its key is held, or is no newer than a key this guest already had
  retired: a guest holds at most ``MAX_KEYS_PER_GUEST`` keys at this lock, a new one retiring
  the oldest, so the lock's memory is bounded per guest however often the guest asks.  (A
  delivery of a key forgotten after expiry is refused as ``expired``.)
* a token is refused unless its tag verifies under an installed key for *this* lock, the key is
  unexpired, its counter (a time slot, :mod:`smartlock.core.token`) is within
  ``token_window_s`` of the lock's own slot (``stale`` otherwise), and it is higher than every
  counter accepted under that key;
* one advertisement is evaluated at most once per ``duplicate_window_s``: a guest advertises each
  token many times a second, and those repeats are ignored silently rather than counted as
  attacks.  The window is longer than the guest's token refresh (2 s), so a genuine guest never
  outlives it; the same frame seen after the window -- a replay, also after a restart -- is
  evaluated again and refused as a ``replay``, once per window however fast it is repeated.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.intrusion import IntrusionDetector
from smartlock.core.issuance import (
    DEFAULT_CLOCK_SKEW_S,
    MAX_KEY_TTL_S,
    SessionKey,
    open_lock_delivery,
)
from smartlock.core.messages import NO_PASS, UNLIMITED_USES, Action, IssuanceHeader
from smartlock.core.revocation import RevocationList
from smartlock.core.token import (
    KEY_HANDLE_BYTES,
    TOKEN_SLOT_S,
    TokenFrame,
    token_is_valid,
    token_payload,
    token_slot,
)
from smartlock.core.wire import check_identifier

SNAPSHOT_VERSION = 3  # 3: revoked users with the time before which their keys are revoked
LOCK_SUBJECT = "lock"  # the intrusion detector's subject at a lock: the lock itself
# Refusals that count as failed attempts at this lock: a token that names a key this lock holds
# (or held) and fails.  A token under a key this lock never held does not count (it is most
# often meant for the neighbouring lock, and guessing a 128-bit tag is futile), nor does a
# malformed frame: counting radio noise would let anyone in range lock the door out for free.
COUNTED_FAILURES = frozenset(
    {
        Reason.BAD_MAC,
        Reason.REPLAY,
        Reason.STALE,
        Reason.EXPIRED,
        Reason.PASS_REVOKED,
        Reason.USES_EXHAUSTED,
    }
)
KEEP_EXPIRED_KEYS_S = 3600  # so a late token is refused as "expired", not "unknown key"
RECENT_FRAMES_MAX = 1024
MAX_KEYS_PER_GUEST = 4  # a guest asking again and again cannot grow the lock's state
DEFAULT_DUPLICATE_WINDOW_S = 3.0
# Unlocks under one key within this many seconds of a counted one are the same opening: the
# guest advertises a fresh token every 2 s until the lock's confirmation reaches it, so one
# opening may show the lock two tokens.  They count as one use of the pass.
USE_MERGE_S = 5.0


@dataclass(frozen=True)
class KeyInstalled:
    key: SessionKey


@dataclass(frozen=True)
class AccessGranted:
    key: SessionKey
    counter: int
    action: Action


class LockVerifier:
    def __init__(
        self,
        *,
        lock_id: str,
        backend_public: crypto.TrustedKeys,
        lock_key: crypto.PrivateKey,
        previous_lock_keys: Sequence[crypto.PrivateKey] = (),
        clock_skew_s: int = DEFAULT_CLOCK_SKEW_S,
        duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
        token_window_s: float = DEFAULT_CLOCK_SKEW_S,
        intrusion: IntrusionDetector | None = None,
    ) -> None:
        self.lock_id = lock_id
        self.intrusion = IntrusionDetector() if intrusion is None else intrusion
        self.revocation_version = 0
        self._revoked_passes: set[int] = set()
        self._revoked_users: dict[str, int] = {}  # name -> keys issued at or before are revoked
        # unlocks accepted under each pass, kept for good: one entry per pass used at this lock
        self._pass_uses: dict[int, int] = {}
        # keys dropped by a revocation, until they expire: their tokens are refused by name
        self._revoked_keys: dict[bytes, IssuanceHeader] = {}
        # key id -> when an unlock under it was last counted against its pass
        self._last_counted_use: dict[bytes, float] = {}
        self._backend_public = backend_public
        self._lock_keys = (lock_key, *previous_lock_keys)
        self._clock_skew_s = clock_skew_s
        self._duplicate_window_s = duplicate_window_s
        self._token_window_s = token_window_s
        self._keys: dict[bytes, SessionKey] = {}
        self._last_counter: dict[bytes, int] = {}
        self._retired_up_to: dict[str, int] = {}  # guest -> issued_at of its newest retired key
        self._recent_frames: OrderedDict[bytes, float] = OrderedDict()

    # --- key deliveries --------------------------------------------------------------------

    def _open_delivery(self, payload: bytes, now: float) -> SessionKey:
        """Under the lock's key, else (a rotation's overlap) under a previous one."""
        *earlier, last = self._lock_keys
        for lock_key in earlier:
            try:
                return self._open_delivery_with(payload, now, lock_key)
            except Rejected as rejected:
                if rejected.reason is not Reason.UNDECRYPTABLE:
                    raise
        return self._open_delivery_with(payload, now, last)

    def _open_delivery_with(
        self, payload: bytes, now: float, lock_key: crypto.PrivateKey
    ) -> SessionKey:
        return open_lock_delivery(
            payload,
            lock_id=self.lock_id,
            backend_public=self._backend_public,
            lock_key=lock_key,
            now=now,
            clock_skew_s=self._clock_skew_s,
        )

    def set_backend_keys(self, backend_public: crypto.TrustedKeys) -> None:
        """The backend's key was rotated: deliveries signed by any of these are accepted."""
        self._backend_public = backend_public

    def set_lock_keys(
        self, lock_key: crypto.PrivateKey, previous: Sequence[crypto.PrivateKey] = ()
    ) -> None:
        """The lock's key was rotated: deliveries for ``lock_key`` open, and during the overlap
        those still made for a ``previous`` key too."""
        self._lock_keys = (lock_key, *previous)

    def accept_delivery(self, payload: bytes, now: float) -> KeyInstalled:
        key = self._open_delivery(payload, now)
        guest_id = key.header.guest_id
        if self._is_revoked(key):
            raise Rejected(
                Reason.PASS_REVOKED, f"key {key.handle} for a revoked pass or user", who=guest_id
            )
        if key.key_id in self._revoked_keys:
            raise Rejected(Reason.PASS_REVOKED, f"key {key.handle} was revoked", who=guest_id)
        if key.key_id in self._keys:
            raise Rejected(Reason.REPLAY, f"key delivery {key.handle} already seen")
        if key.header.issued_at <= self._retired_up_to.get(guest_id, -1):
            raise Rejected(Reason.REPLAY, f"key {key.handle} is no newer than a retired one")
        self.prune(now)
        held = sorted(
            (k for k in self._keys.values() if k.header.guest_id == guest_id),
            key=lambda k: k.header.issued_at,
        )
        for oldest in held[: max(0, len(held) - MAX_KEYS_PER_GUEST + 1)]:
            del self._keys[oldest.key_id]
            del self._last_counter[oldest.key_id]
            self._last_counted_use.pop(oldest.key_id, None)
            self._retired_up_to[guest_id] = max(
                self._retired_up_to.get(guest_id, -1), oldest.header.issued_at
            )
        self._keys[key.key_id] = key
        self._last_counter[key.key_id] = 0
        return KeyInstalled(key)

    # --- advertisements ----------------------------------------------------------------------

    def check_advertisement(self, data: bytes, now: float) -> AccessGranted | None:
        """Decide on one advertising report.

        Returns None for an advertisement that carries no smartlock token or repeats one seen
        within the duplicate window; raises :class:`Rejected` for a refused token.
        """
        if self._is_recent_duplicate(data, now):  # before parsing: one verdict per window
            return None
        payload = token_payload(data)
        if payload is None:
            return None
        try:
            return self._check_token(payload, now, self.intrusion.locked_until(LOCK_SUBJECT, now))
        except Rejected as refusal:
            if refusal.reason in COUNTED_FAILURES:
                verdict = self.intrusion.record_failure(LOCK_SUBJECT, now)
                refusal.attempt = verdict.attempt
                refusal.lockout_until = verdict.lockout_until
            raise

    def _check_token(self, payload: bytes, now: float, locked_until: float | None) -> AccessGranted:
        frame = TokenFrame.from_bytes(payload)
        key = self._key_for(frame)
        who, pass_id = key.header.guest_id, key.header.pass_id
        if now >= key.header.expires_at:
            raise Rejected(
                Reason.EXPIRED, f"token under expired key {key.handle}", who=who, pass_id=pass_id
            )
        expected = token_slot(key.header.issued_at, now)
        if abs(frame.counter - expected) * TOKEN_SLOT_S > self._token_window_s:
            raise Rejected(
                Reason.STALE,
                f"token {frame.counter} under key {key.handle} is not of now (slot {expected})",
                who=who,
                pass_id=pass_id,
            )
        if frame.counter <= self._last_counter[key.key_id]:
            raise Rejected(
                Reason.REPLAY,
                f"token {frame.counter} under key {key.handle} already used",
                who=who,
                pass_id=pass_id,
            )
        if locked_until is not None and pass_id != NO_PASS:
            # A lockout stops guests' tokens, valid or not; an owner's or resident's valid
            # token still opens (who has sniffed a key handle can cause a lockout at will).
            raise Rejected(
                Reason.LOCKED_OUT,
                f"too many failed attempts; guests' tokens refused for {locked_until - now:.0f} s",
                who=who,
                pass_id=pass_id,
            )
        max_uses = key.header.max_uses
        unlocking = frame.action is Action.UNLOCK
        counted_at = self._last_counted_use.get(key.key_id)
        same_opening = unlocking and counted_at is not None and 0 <= now - counted_at <= USE_MERGE_S
        used = self._pass_uses.get(pass_id, 0)
        if unlocking and not same_opening and max_uses != UNLIMITED_USES and used >= max_uses:
            raise Rejected(
                Reason.USES_EXHAUSTED,
                f"pass {pass_id} used {max_uses} times",
                who=who,
                pass_id=pass_id,
            )
        self._last_counter[key.key_id] = frame.counter
        if unlocking and pass_id != NO_PASS and not same_opening:
            self._pass_uses[pass_id] = used + 1
            self._last_counted_use[key.key_id] = now
        return AccessGranted(key, frame.counter, frame.action)

    # --- revocation --------------------------------------------------------------------------

    def apply_revocations(self, revocations: RevocationList) -> list[SessionKey] | None:
        """Apply a verified list; the keys it dropped, or None when it is the one held already.

        An older list is refused as a replay: it could bring a revoked pass back.
        """
        if revocations.version < self.revocation_version:
            raise Rejected(
                Reason.REPLAY,
                f"revocation list v{revocations.version} older than v{self.revocation_version}",
            )
        if revocations.version == self.revocation_version:
            return None
        self.revocation_version = revocations.version
        self._revoked_passes = set(revocations.pass_ids)
        self._revoked_users = dict(revocations.users)
        dropped = [k for k in self._keys.values() if self._is_revoked(k)]
        for key in dropped:
            del self._keys[key.key_id]
            del self._last_counter[key.key_id]
            self._revoked_keys[key.key_id] = key.header
        return dropped

    def _is_revoked(self, key: SessionKey) -> bool:
        header = key.header
        if header.pass_id != NO_PASS and header.pass_id in self._revoked_passes:
            return True
        revoked_before = self._revoked_users.get(header.guest_id)
        return revoked_before is not None and header.issued_at <= revoked_before

    def _key_for(self, frame: TokenFrame) -> SessionKey:
        candidates = [
            k for k in self._keys.values() if k.key_id[:KEY_HANDLE_BYTES] == frame.key_handle
        ]
        if not candidates:
            for header in self._revoked_keys.values():
                if header.key_id[:KEY_HANDLE_BYTES] == frame.key_handle:
                    raise Rejected(
                        Reason.PASS_REVOKED,
                        f"token under key {frame.key_handle.hex()}, revoked",
                        who=header.guest_id,
                        pass_id=header.pass_id,
                    )
            raise Rejected(Reason.UNKNOWN_KEY, f"no key {frame.key_handle.hex()} at this lock")
        for key in candidates:
            if token_is_valid(frame, key, self.lock_id):
                return key
        raise Rejected(
            Reason.BAD_MAC, f"token tag does not verify under key {frame.key_handle.hex()}"
        )

    def _is_recent_duplicate(self, data: bytes, now: float) -> bool:
        evaluated_at = self._recent_frames.get(data)
        if evaluated_at is not None and 0 <= now - evaluated_at <= self._duplicate_window_s:
            return True
        self._recent_frames.pop(data, None)
        self._recent_frames[data] = now
        while len(self._recent_frames) > RECENT_FRAMES_MAX:
            self._recent_frames.popitem(last=False)
        return False

    # --- bookkeeping -----------------------------------------------------------------------

    def prune(self, now: float) -> None:
        """Forget keys long expired, and marks no delivery could still get past (24 h)."""
        for key_id, key in list(self._keys.items()):
            if now >= key.header.expires_at + KEEP_EXPIRED_KEYS_S:
                del self._keys[key_id]
                del self._last_counter[key_id]
                self._last_counted_use.pop(key_id, None)
        for guest_id, issued_at in list(self._retired_up_to.items()):
            if now >= issued_at + MAX_KEY_TTL_S:
                del self._retired_up_to[guest_id]
        for key_id, header in list(self._revoked_keys.items()):
            if now >= header.expires_at:
                del self._revoked_keys[key_id]
        # Pass uses are kept: a key carries its pass's whole use limit, so a later key of the
        # same pass must find the count where the earlier ones left it.

    def active_keys(self, now: float) -> list[SessionKey]:
        return [k for k in self._keys.values() if now < k.header.expires_at]

    def snapshot(self) -> bytes:
        """The durable state (keys, counters, retired marks) as JSON bytes; it holds secrets."""
        return json.dumps(
            {
                "version": SNAPSHOT_VERSION,
                "lock_id": self.lock_id,
                "keys": [
                    {
                        "key_id": key.key_id.hex(),
                        "issued_at": key.header.issued_at,
                        "expires_at": key.header.expires_at,
                        "lock_id": key.header.lock_id,
                        "guest_id": key.header.guest_id,
                        "pass_id": key.header.pass_id,
                        "max_uses": key.header.max_uses,
                        "secret": key.secret.hex(),
                        "last_counter": self._last_counter[key.key_id],
                    }
                    for key in self._keys.values()
                ],
                "retired_up_to": dict(self._retired_up_to),
                "pass_uses": {str(p): n for p, n in self._pass_uses.items()},
                "revocation_version": self.revocation_version,
                "revoked_passes": sorted(self._revoked_passes),
                "revoked_users": sorted([u, t] for u, t in self._revoked_users.items()),
                "revoked_keys": [
                    [h.key_id.hex(), h.guest_id, h.pass_id, h.expires_at]
                    for h in self._revoked_keys.values()
                ],
                "intrusion": self.intrusion.snapshot().decode(),
            },
            sort_keys=True,
        ).encode()

    def restore(self, snapshot: bytes) -> None:
        """Load a :meth:`snapshot`; a snapshot of another lock or version is a local error."""
        try:
            state = json.loads(snapshot)
            version = state["version"]
            if type(version) is not int or version != SNAPSHOT_VERSION:
                raise ValueError("unknown snapshot version")
            if state["lock_id"] != self.lock_id:
                raise ValueError("snapshot of another lock")
            keys = {}
            counters = {}
            for item in state["keys"]:
                header = IssuanceHeader(
                    bytes.fromhex(item["key_id"]),
                    int(item["issued_at"]),
                    int(item["expires_at"]),
                    item["lock_id"],
                    item["guest_id"],
                    int(item["pass_id"]),
                    int(item["max_uses"]),
                )
                if header.lock_id != self.lock_id:
                    raise ValueError("snapshot holds another lock's key")
                secret = bytes.fromhex(item["secret"])
                if len(secret) != crypto.SESSION_KEY_BYTES:
                    raise ValueError("snapshot holds a session key of the wrong size")
                keys[header.key_id] = SessionKey(header, secret)
                counters[header.key_id] = int(item["last_counter"])
            retired = {check_identifier(g): int(v) for g, v in state["retired_up_to"].items()}
            pass_uses = {int(p): int(n) for p, n in state["pass_uses"].items()}
            revocation_version = int(state["revocation_version"])
            revoked_passes = {int(p) for p in state["revoked_passes"]}
            revoked_users = {check_identifier(u): int(t) for u, t in state["revoked_users"]}
            revoked_keys = {}
            for key_hex, guest, pass_id, expires_at in state["revoked_keys"]:
                header = IssuanceHeader(
                    bytes.fromhex(key_hex), 0, int(expires_at), self.lock_id, guest, int(pass_id)
                )
                revoked_keys[header.key_id] = header
            self.intrusion.restore(str(state["intrusion"]).encode())
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as exc:
            raise ValueError(f"unreadable lock state: {type(exc).__name__}") from None
        self._keys, self._last_counter, self._retired_up_to = keys, counters, retired
        self._pass_uses, self.revocation_version = pass_uses, revocation_version
        self._revoked_passes, self._revoked_users = revoked_passes, revoked_users
        self._revoked_keys = revoked_keys
