"""The lock agent's part of software updates: take an offer, download, verify, install, restart.

Order, so that nothing half-done can run (README, "Updates"):

1. an offer (``locks/{lock}/update``) is checked from its head alone -- release signature
   against the pinned key, model, version above the highest ever installed, minimum version
   (:func:`smartlock.core.release.check_head`) -- before a single chunk is fetched;
2. chunks are kept on disk as they arrive (``download/`` in the lock's directory), so a download
   cut by a lost connection or a restart resumes with the chunks still missing;
3. the whole bundle is verified again (:func:`smartlock.core.release.open_bundle`: signature and
   the payload's signed hash and size), unpacked into the spare slot, the trial is recorded --
   which raises the highest-installed floor first -- and the agent exits with
   :data:`~smartlock.adapters.slot_files.RESTART_FOR_UPDATE` for its supervisor to start the new
   version on trial (``smartlock lock supervise``), which goes back by itself if the new version
   does not report healthy within the grace period.

Every step is reported to the backend (:class:`smartlock.core.reports.UpdateStep`), which audits
it.  An agent that runs without a supervisor refuses updates (``not_supervised``): nothing could
roll a bad version back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from smartlock import __version__, crypto
from smartlock.adapters.slot_files import SlotFiles
from smartlock.core.errors import Reason, Rejected
from smartlock.core.release import (
    DEFAULT_MODEL,
    Manifest,
    UpdateRefused,
    Version,
    check_head,
    open_bundle,
    parse_version,
    read_manifest_unverified,
    version_text,
)
from smartlock.core.reports import UpdateStep
from smartlock.core.update_transfer import Download, UpdateChunk, UpdateOffer, chunk_topic
from smartlock.services.common import Rejections
from smartlock.site import Site, write_private

logger = logging.getLogger("smartlock.lock")

PROGRESS_LINES = 100  # at most this many progress lines per download (one per chunk up to it)
SETTLED_MEMORY = 32  # bundle ids a lock remembers having finished with (not offered again)
FACTORY_VERSION: Version = parse_version(__version__)


class RestartForUpdate(Exception):
    """Raised out of the agent once an update is installed: exit for the supervisor to start
    the new version on trial."""


class LockUpdater:
    """Glue between the lock's MQTT session and its slots; the agent calls :meth:`on_offer` and
    :meth:`on_chunk` and subscribes to what :meth:`wanted_chunks` lists."""

    def __init__(
        self,
        site: Site,
        lock_id: str,
        *,
        files: SlotFiles,
        supervised: bool,
        grace_s: float,
        report: Callable[[UpdateStep], None],
        subscribe: Callable[[list[str]], None],
        restart: Callable[[], None],
        rejections: Rejections,
        clock: Callable[[], float],
    ) -> None:
        self._site = site
        self._files = files
        self._supervised = supervised
        self._grace_s = grace_s
        self._report = report
        self._subscribe = subscribe
        self._restart = restart
        self._rejections = rejections
        self._clock = clock
        self._dir = site.identity_dir(lock_id) / "download"
        self._state_path = self._dir / "state.json"
        self._download: Download | None = None
        self._settled: list[str] = []
        slots = files.load_state(FACTORY_VERSION)
        if supervised:
            self.running: Version = slots.trial.version if slots.trial else slots.active_version
        else:
            self.running = FACTORY_VERSION
        self._restore()

    # --- what is on disk -------------------------------------------------------------------------

    def _restore(self) -> None:
        if not self._state_path.exists():
            return
        try:
            state = json.loads(self._state_path.read_bytes())
            if not isinstance(state, dict) or state.get("v") != 1:
                raise ValueError("unknown version")
            self._settled = [str(item) for item in state["settled"]][-SETTLED_MEMORY:]
            if state["offer"] is not None:
                offer = UpdateOffer.from_bytes(bytes.fromhex(str(state["offer"])))
                download = Download(offer)
                for index in range(offer.chunk_count):
                    if self._chunk_path(index).exists():
                        download.held.add(index)
                self._download = download
        except (ValueError, KeyError, TypeError, OSError, RecursionError, Rejected) as exc:
            # only a download is lost: the backend's retained offer starts it again
            logger.warning("Update download state unreadable (%s); starting afresh", exc)
            self._drop_download()

    def _save(self) -> None:
        offer = None if self._download is None else bytes(self._download.offer).hex()
        state = {"v": 1, "offer": offer, "settled": self._settled[-SETTLED_MEMORY:]}
        write_private(self._state_path, json.dumps(state).encode())

    def _chunk_path(self, index: int) -> Path:
        return self._dir / f"{index}.chunk"

    def _drop_download(self) -> None:
        self._download = None
        if self._dir.exists():
            for path in self._dir.glob("*.chunk"):
                path.unlink(missing_ok=True)

    # --- messages ------------------------------------------------------------------------------

    def on_offer(self, payload: bytes) -> None:
        if not payload:
            if self._download is not None:
                logger.info("Update offer withdrawn; download dropped")
                self._drop_download()
                self._save()
            return
        try:
            offer = UpdateOffer.from_bytes(payload)
        except Rejected as rejected:
            self._rejections.record("update offer", rejected)
            return
        if offer.bundle_id in self._settled:
            logger.info("Update bundle %s already handled here", offer.bundle_id)
            return
        if self._download is not None and self._download.offer == offer:
            self._want_missing()  # a reconnect: go on where the download stopped
            return
        try:
            manifest = self._check(offer.head)
        except UpdateRefused as refused:
            self._refuse(offer.bundle_id, _version_of(offer.head), refused)
            return
        self._drop_download()
        self._download = Download(offer)
        self._save()
        version = version_text(manifest.version)
        logger.info(
            "Downloading update %s (%d bytes in %d chunks)", version, offer.size, offer.chunk_count
        )
        self._report(UpdateStep(version, "downloading", ""))
        self._want_missing()

    def wanted_chunks(self) -> list[str]:
        """The chunk topics still needed (to subscribe to after a reconnect)."""
        if self._download is None:
            return []
        bundle = self._download.offer.bundle_id
        return [chunk_topic(bundle, index) for index in self._download.missing()]

    def _want_missing(self) -> None:
        assert self._download is not None
        held = len(self._download.held)
        if held:
            logger.info(
                "Resuming the update download: %d of %d chunks already here",
                held,
                self._download.offer.chunk_count,
            )
        if self._download.complete:
            self._finish()
        else:
            self._subscribe(self.wanted_chunks())

    def on_chunk(self, topic: str, payload: bytes) -> None:
        try:
            chunk = UpdateChunk.from_bytes(payload)
            if topic != chunk_topic(chunk.bundle_id, chunk.index):
                raise Rejected(Reason.MALFORMED, "an update chunk under another topic")
            if self._download is None or chunk.bundle_id != self._download.offer.bundle_id:
                return  # a retained chunk of a bundle this lock no longer downloads
            if not self._download.accept(chunk):
                return
        except Rejected as rejected:
            self._rejections.record("update chunk", rejected)
            return
        try:
            write_private(self._chunk_path(chunk.index), chunk.data)
        except OSError as exc:
            self._download.held.discard(chunk.index)
            logger.error("Cannot store update chunk %d (%s)", chunk.index, exc.strerror)
            return
        held, count = len(self._download.held), self._download.offer.chunk_count
        if held % max(1, count // PROGRESS_LINES) == 0 or held == count:
            logger.info("Update download: %d of %d chunks", held, count)
        if self._download.complete:
            self._finish()

    # --- verify, install, restart --------------------------------------------------------------

    def _check(self, head: bytes) -> Manifest:
        if not self._supervised:
            raise UpdateRefused(
                "not_supervised",
                "this agent runs without 'smartlock lock supervise': nothing could roll a bad "
                "version back",
            )
        return check_head(
            head,
            release_public=self._release_public(),
            running=self.running,
            highest_installed=self._files.load_state(FACTORY_VERSION).highest_installed,
            model=DEFAULT_MODEL,
        )

    def _finish(self) -> None:
        assert self._download is not None
        offer = self._download.offer
        try:
            chunks = [self._chunk_path(i).read_bytes() for i in range(offer.chunk_count)]
        except OSError as exc:
            logger.error("Cannot read the downloaded update (%s); fetching it again", exc.strerror)
            self._drop_download()
            self._download = Download(offer)
            self._subscribe(self.wanted_chunks())
            return
        bundle = self._download.assemble(chunks)
        try:
            opened = open_bundle(
                bundle,
                release_public=self._release_public(),
                running=self.running,
                highest_installed=self._files.load_state(FACTORY_VERSION).highest_installed,
                model=DEFAULT_MODEL,
            )
            slots = self._files.load_state(FACTORY_VERSION)
            self._files.install_wheel(slots.spare, opened.payload)
        except UpdateRefused as refused:
            self._refuse(offer.bundle_id, _version_of(offer.head), refused)
            return
        version = opened.manifest.version
        trial = slots.start_trial(version, self._clock(), self._grace_s)
        self._files.save_state(trial)  # the floor rises before the new version ever runs
        self._settle(offer.bundle_id)
        logger.info(
            "Installed update %s into slot %s; restarting into it on trial (%.0f s to be healthy)",
            version_text(version),
            trial.slot_to_run,
            self._grace_s,
        )
        self._report(UpdateStep(version_text(version), "installed", ""))
        self._restart()

    def _refuse(self, bundle: str, version: str, refused: UpdateRefused) -> None:
        self._rejections.counts[f"update_{refused.reason}"] += 1
        logger.warning("Refused update %s (%s): %s", version or "?", refused.reason, refused)
        self._report(UpdateStep(version, "refused", refused.reason))
        self._settle(bundle)

    def _settle(self, bundle: str) -> None:
        self._drop_download()
        self._settled = [*[b for b in self._settled if b != bundle], bundle][-SETTLED_MEMORY:]
        try:
            self._save()
        except OSError as exc:
            logger.error("Cannot store the update state (%s)", exc.strerror)

    def _release_public(self) -> crypto.PublicKey:
        path = self._site.release_public_path
        if not path.exists():
            raise UpdateRefused(
                "no_release_key", "no release key is pinned ('smartlock release trust')"
            )
        try:
            return crypto.load_public_key(path.read_bytes())
        except (OSError, crypto.CryptoError):
            raise UpdateRefused("no_release_key", f"{path} is unreadable") from None


def _version_of(head: bytes) -> str:
    """The version a refused bundle claims, for the report only (never trusted otherwise): an
    X.Y.Z text or ""."""
    try:
        manifest, _, _ = read_manifest_unverified(head)
        claimed = str(json.loads(manifest).get("version", ""))
        parse_version(claimed)
    except (UpdateRefused, ValueError, AttributeError, RecursionError):
        return ""
    return claimed
