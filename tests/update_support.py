"""Lock agent wheels and signed bundles for the update tests, made from this very source tree.

A wheel here is what ``pip wheel .`` would give for the agent (the ``smartlock`` package plus a
``.dist-info``), with ``__version__`` set to the release's version: a lock that installs it
really runs it from its slot.  ``broken=True`` makes a build that exits as soon as it starts.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import smartlock
from smartlock import crypto
from smartlock.core.release import make_bundle, parse_version

PACKAGE = Path(smartlock.__file__).parent
BROKEN_MAIN = 'raise SystemExit("this build of the lock agent cannot start")\n'


def agent_wheel(version: str, *, broken: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            name = f"smartlock/{path.relative_to(PACKAGE).as_posix()}"
            data = path.read_bytes()
            if name == "smartlock/__init__.py":
                data = data.replace(
                    f'__version__ = "{smartlock.__version__}"'.encode(),
                    f'__version__ = "{version}"'.encode(),
                )
            elif name == "smartlock/__main__.py" and broken:
                data = BROKEN_MAIN.encode()
            wheel.writestr(name, data)
        info = f"smartlock-{version}.dist-info"
        wheel.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: smartlock\nVersion: {version}\n"
        )
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")
    return buffer.getvalue()


def signed_bundle(
    key: crypto.PrivateKey, version: str, *, broken: bool = False, min_version: str = "0.0.0"
) -> bytes:
    return make_bundle(
        agent_wheel(version, broken=broken),
        release_key=key,
        version=parse_version(version),
        min_version=parse_version(min_version),
    )
