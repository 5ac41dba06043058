"""Key files followed by their version (inode and mtime), for rotation without a restart.

A private key that follows its file, for key rotation without a restart (``smartlock rotate
lock-key``): the holder asks :meth:`RotatingKey.refresh` before each use and gets the new key,
plus the previous one while the rotation's overlap lasts (its ``.previous`` file exists)."""

from __future__ import annotations

from pathlib import Path

from smartlock import crypto
from smartlock.core.errors import ConfigError

MISSING = (-1, -1)  # the version of a file that does not exist


def file_version(path: Path) -> tuple[int, int]:
    """Changes when the file is replaced (a new inode) or rewritten (a new mtime)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return MISSING
    return (stat.st_ino, stat.st_mtime_ns)


def _load(path: Path) -> crypto.PrivateKey:
    try:
        return crypto.load_private_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except crypto.CryptoError as exc:
        raise ConfigError(f"{path}: {exc}") from None


class RotatingKey:
    def __init__(self, current: Path, previous: Path) -> None:
        self._paths = (current, previous)
        self._seen: tuple[tuple[int, int], ...] = ()
        self.current: crypto.PrivateKey
        self.previous: tuple[crypto.PrivateKey, ...] = ()
        self.refresh()

    @property
    def version(self) -> tuple[tuple[int, int], ...]:
        """Changes whenever :meth:`refresh` read the files again."""
        return self._seen

    def refresh(self) -> bool:
        """Read the files again if either changed; True when the keys changed."""
        seen = (file_version(self._paths[0]), file_version(self._paths[1]))
        if seen == self._seen:
            return False
        current = _load(self._paths[0])
        previous = () if seen[1] == MISSING else (_load(self._paths[1]),)
        self.current, self.previous, self._seen = current, previous, seen
        return True
