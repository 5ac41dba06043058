"""A provisioned site made once per module and copied for each test (making one costs RSA key
generation for every identity; a copy costs a file copy)."""

from __future__ import annotations

import shutil
from pathlib import Path

from smartlock.site import Site


def copy_site(source: Site, target: Path) -> Site:
    """A copy of ``source`` at ``target`` that a test may change; modes stay 0600 / 0700."""
    shutil.copytree(source.root, target, symlinks=True)
    return Site.load(target)
