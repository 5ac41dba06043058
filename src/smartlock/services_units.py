"""systemd units for a site's long-lived parts, rendered as text: the broker, the radio hub, the
backend, and a template for the lock agents (``smartlock-lock@LOCK_ID.service``).

Rendering is pure (:func:`render_units` takes a :class:`UnitSpec` and returns text); only
:func:`smartlock_executable` and :func:`write_units` look at the machine.  Each unit runs the
same command a user runs by hand (README, "Running the parts by hand") with ``--site`` the
absolute site path, restarts on failure, and is sandboxed to what the code writes:

========================  ====================  ===============================================
unit                      runs as               writes (and so ``ReadWritePaths=``)
========================  ====================  ===============================================
smartlock-broker          root, then Mosquitto  SITE/broker (config, pid, data/); SITE's own
                          drops to 'mosquitto'  mode and group (see :data:`BROKER_SITE_ROOT_NOTE`)
smartlock-radio-hub       the service user      SITE/radio (the unix sockets)
smartlock-backend         the service user      SITE/backend (keys, intrusion.json, store.db);
                                                with ``--http`` also what enrolling a guest
                                                writes: SITE/users, SITE/public/users,
                                                SITE/broker (passwd, acl)
smartlock-lock@ID         the service user      SITE/locks/ID (state.json)
========================  ====================  ===============================================

The private-key directories a service never reads are made inaccessible to it as well.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from smartlock.core.errors import ConfigError

DEFAULT_USER = "smartlock"
UNITS_DIR = "systemd"  # SITE/systemd/ by default
BROKER_UNIT = "smartlock-broker.service"
RADIO_HUB_UNIT = "smartlock-radio-hub.service"
BACKEND_UNIT = "smartlock-backend.service"
LOCK_UNIT = "smartlock-lock@.service"
RESTART_SEC = 5

# ProtectHome=yes hides these; ProtectHome=read-only keeps them visible (and ReadWritePaths=
# still makes the state directories in them writable).
HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))
# PrivateTmp=yes gives the service an empty /tmp of its own: a site (or a venv) in here vanishes.
TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 -- compared against, never written

_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Characters systemd reads specially in paths and command lines: whitespace separates words,
# '%' starts a specifier, '$' a variable, '\\' and quotes escape.  Refused rather than escaped.
_UNSAFE = re.compile(r"[\s%$\\\"';]")

BROKER_SITE_ROOT_NOTE = """\
# Why SITE itself is writable here: on every start 'smartlock broker' (running as root) chowns
# the site directory to the group 'mosquitto' and chmods it 0750 (broker.py,
# grant_broker_access), and a read-only mount refuses even a chmod to the mode a directory
# already has (EROFS: the broker then stops with a traceback).  The private-key directories
# are inaccessible below; everything else of the site stays as it is."""


@dataclass(frozen=True)
class UnitSpec:
    """What the units of one site are rendered from.

    ``runtime`` lists where the executable and its Python live (a venv and the interpreter it
    links to): when any of them, or the site, is under a home directory the units use
    ``ProtectHome=read-only`` instead of ``yes``, and under /tmp no private /tmp.
    """

    site: Path
    executable: Path
    locks: tuple[str, ...] = ()
    user: str = DEFAULT_USER
    http: str | None = None
    runtime: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        for what, path in (("site", self.site), ("executable", self.executable)):
            if not path.is_absolute():
                raise ConfigError(f"the {what} path must be absolute for systemd: {path}")
            _check_safe(what, str(path))
        if not _USER_NAME.fullmatch(self.user):
            raise ConfigError(f"{self.user!r} is not a valid user name for User=")
        if self.http is not None:
            _check_safe("--http address", self.http)

    @property
    def protect_home(self) -> str:
        return "read-only" if _any_under(self._visible_paths, HOME_DIRS) else "yes"

    @property
    def private_tmp(self) -> bool:
        return not _any_under(self._visible_paths, TMP_DIRS)

    @property
    def _visible_paths(self) -> tuple[Path, ...]:
        return (self.site, self.executable, *self.runtime)


def _check_safe(what: str, text: str) -> None:
    if _UNSAFE.search(text) or not text.isprintable():
        raise ConfigError(
            f"the {what} {text!r} holds a character systemd reads specially "
            "(whitespace, %, $, \\, quotes, ;): use a plainer path"
        )


def _any_under(paths: Iterable[Path], roots: Iterable[Path]) -> bool:
    return any(path.is_relative_to(root) for path in paths for root in roots)


# --- rendering ---------------------------------------------------------------------------------


def _header(spec: UnitSpec, unit: str, summary: str) -> list[str]:
    site = spec.site
    owned = " ".join(str(p) for p in _service_user_dirs(spec))
    locks = " ".join(f"smartlock-lock@{lock}" for lock in spec.locks) or "smartlock-lock@LOCK_ID"
    return [
        f"# {unit}: {summary}",
        f"# Generated by smartlock for the site {site};",
        f"# 'smartlock systemd-units --site {site}' writes it again.",
        "#",
        "# Install (as root):",
        f"#   useradd --system --shell /usr/sbin/nologin {spec.user}   # once",
        f"#   chown {spec.user} {site} && chown -R {spec.user}: {owned}",
        f"#   cp {site / UNITS_DIR}/*.service /etc/systemd/system/ && systemctl daemon-reload",
        "#   systemctl enable --now smartlock-broker smartlock-radio-hub smartlock-backend "
        f"{locks}",
        "# (smartlock-radio-hub only when the locks use the virtual radio.)  A lock added later",
        f"# with 'smartlock lock add' needs 'chown -R {spec.user}: {site}/locks/ID' too.",
        "",
    ]


def _service_user_dirs(spec: UnitSpec) -> list[Path]:
    """The directories the unprivileged services write: they must belong to the service user."""
    site = spec.site
    dirs = [site / "backend", site / "locks", site / "radio"]
    if spec.http is not None:
        dirs += [site / "users", site / "public" / "users"]
    return dirs


def _hardening(
    spec: UnitSpec,
    *,
    writable: Iterable[Path | str],
    inaccessible: Iterable[Path],
    families: str = "AF_INET AF_INET6 AF_UNIX",
    capabilities: str = "",
    private_devices: bool = True,
) -> list[str]:
    lines = [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        *(f"ReadWritePaths={path}" for path in writable),
    ]
    hidden = " ".join(f"-{path}" for path in inaccessible)  # '-': fine if it does not exist
    if hidden:
        lines.append(f"InaccessiblePaths={hidden}")
    if spec.protect_home == "read-only":
        lines.append(
            "# The site or this Python lives under a home directory: read-only, not hidden."
        )
    lines.append(f"ProtectHome={spec.protect_home}")
    if spec.private_tmp:
        lines.append("PrivateTmp=yes")
    else:
        lines += [
            "# The site (or this Python) is under /tmp or /var/tmp: a private /tmp would hide",
            "# it, so there is none.  Better move the site to /srv or /var/lib (systemd-tmpfiles",
            "# also cleans /tmp).",
            "PrivateTmp=no",
        ]
    lines += [
        f"PrivateDevices={'yes' if private_devices else 'no'}",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        f"RestrictAddressFamilies={families}",
        "RestrictNamespaces=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "SystemCallArchitectures=native",
        f"CapabilityBoundingSet={capabilities}",
        "UMask=0077",
    ]
    return lines


def _service(
    spec: UnitSpec, *, command: str, working_directory: Path, user: bool = True
) -> list[str]:
    lines = ["[Service]", "Type=simple"]
    if user:
        lines += [f"User={spec.user}", f"Group={spec.user}"]
    lines += [
        f"ExecStart={spec.executable} {command} --site {spec.site}",
        f"WorkingDirectory={working_directory}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
    ]
    return lines


def _join(*sections: list[str]) -> str:
    return "\n".join(line for section in sections for line in section) + "\n"


def render_broker_unit(spec: UnitSpec) -> str:
    """Mosquitto with the site's generated config (``smartlock broker``)."""
    site = spec.site
    return _join(
        _header(spec, BROKER_UNIT, "the site's Mosquitto (TLS only, ACL, hashed passwords)"),
        [
            "[Unit]",
            "Description=smartlock broker (Mosquitto) for the site " + str(site),
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "# No User=: this unit starts as root on purpose, and nothing of it keeps root.",
            "# 'smartlock broker' writes 'user mosquitto' into the config when it runs as root",
            "# (broker.py, render_config), and Mosquitto switches to that user before it opens",
            "# the password file, the ACL, the TLS key and its listener's clients (NOTES.md,",
            "# 'Root drops privileges'); the files it reads are 0640 to the group 'mosquitto'.",
            "# Only the smartlock process that supervises it stays root, with the capabilities",
            "# below: CHOWN/FOWNER to give those files to the group, SETUID/SETGID for",
            "# Mosquitto's switch, DAC_OVERRIDE to read a site owned by the service user.",
            "# Do not add ExecReload= with SIGHUP: it would reach smartlock, not Mosquitto;",
            "# 'smartlock user add' and friends reload the broker themselves.",
        ],
        [""],
        _service(spec, command="broker", working_directory=site / "broker", user=False),
        [BROKER_SITE_ROOT_NOTE],
        _hardening(
            spec,
            writable=[site / "broker", site],
            inaccessible=[site / "ca", site / "backend", site / "locks", site / "users"],
            capabilities="CAP_CHOWN CAP_FOWNER CAP_SETUID CAP_SETGID CAP_DAC_OVERRIDE",
        ),
        ["", "[Install]", "WantedBy=multi-user.target"],
    )


def render_radio_hub_unit(spec: UnitSpec) -> str:
    """The virtual BLE radio (``smartlock radio-hub``)."""
    site = spec.site
    return _join(
        _header(spec, RADIO_HUB_UNIT, "the site's virtual BLE radio"),
        [
            "[Unit]",
            "Description=smartlock virtual BLE radio hub for the site " + str(site),
            "# Only useful when the locks and users use the virtual radio (the default).  Locks",
            "# with a real controller (--radio usb:0, hci-socket:0, ...) do not need it.",
        ],
        [""],
        _service(spec, command="radio-hub", working_directory=site / "radio"),
        _hardening(
            spec,
            writable=[site / "radio"],
            inaccessible=[
                site / "ca",
                site / "backend",
                site / "locks",
                site / "users",
                site / "broker",
            ],
            families="AF_UNIX",  # its controllers are unix sockets, nothing else
        ),
        ["", "[Install]", "WantedBy=multi-user.target"],
    )


def render_backend_unit(spec: UnitSpec) -> str:
    """The backend (``smartlock backend``), with the dashboard when ``spec.http`` is set."""
    site = spec.site
    command = "backend" if spec.http is None else f"backend --http {spec.http}"
    writable: list[Path] = [site / "backend"]
    inaccessible = [site / "ca", site / "locks", site / "users", site / "broker"]
    notes: list[str] = []
    if spec.http is not None:
        writable += [site / "users", site / "public" / "users", site / "broker"]
        inaccessible = [site / "ca"]
        notes = [
            "# With --http the dashboard enrols guests' own devices: that writes the guest's",
            "# password (users/), public key (public/users/) and the broker's passwd and acl",
            "# (reading every lock's and user's password), hence the extra paths.  A non-",
            "# loopback --http address is served over HTTPS with broker/broker.key, which is",
            "# 0640 to the group 'mosquitto': add SupplementaryGroups=mosquitto for that.",
        ]
    return _join(
        _header(spec, BACKEND_UNIT, "the backend (key issuance, remote commands, audit log)"),
        [
            "[Unit]",
            "Description=smartlock backend for the site " + str(site),
            "Wants=network-online.target smartlock-broker.service",
            "After=network-online.target smartlock-broker.service",
            "# A PostgreSQL store (--db, or site.json's store_url) on this machine: add",
            "# postgresql.service to After=.",
        ],
        [""],
        _service(spec, command=command, working_directory=site / "backend"),
        notes,
        _hardening(spec, writable=writable, inaccessible=inaccessible),
        ["", "[Install]", "WantedBy=multi-user.target"],
    )


def render_lock_unit(spec: UnitSpec) -> str:
    """The lock agents' template: ``smartlock-lock@ID.service`` runs ``lock supervise --id ID``
    (the agent from its active software slot, updates on trial, rollback by itself)."""
    site = spec.site
    return _join(
        _header(spec, LOCK_UNIT, "a lock agent; the instance name is the lock id"),
        [
            "[Unit]",
            "Description=smartlock lock agent %i for the site " + str(site),
            "Wants=network-online.target smartlock-broker.service",
            "# After= the radio hub only orders them: a lock on a real radio does not pull it in.",
            "After=network-online.target smartlock-broker.service smartlock-radio-hub.service",
        ],
        [""],
        _service(spec, command="lock supervise --id %i", working_directory=site / "locks" / "%i"),
        [
            "# The supervisor runs 'lock run' from the active software slot (locks/ID/slots)",
            "# and passes it every option it does not know itself.",
            "# Options per lock (--radio usb:0, --actuator gpio:17, --min-rssi -70, ...):",
            "#   systemctl edit smartlock-lock@ID, then repeat ExecStart= empty and in full.",
            "# A real radio or GPIO needs its device, which PrivateDevices=yes hides.  In that",
            "# drop-in set PrivateDevices=no and allow only that device, for example for",
            "# --actuator gpio:17 (gpiozero through lgpio) and --radio usb:0:",
            "#   PrivateDevices=no",
            "#   DevicePolicy=closed",
            "#   DeviceAllow=/dev/gpiochip0 rw",
            "#   DeviceAllow=char-usb_device rw",
            "#   SupplementaryGroups=gpio",
            "# and for --radio hci-socket:0 (a Python with AF_BLUETOOTH, see README):",
            "#   RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_BLUETOOTH",
            "#   CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
            "#   AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
            "# WorkingDirectory= is the lock's own directory: lgpio makes its notification",
            "# pipes in the working directory.",
        ],
        _hardening(
            spec,
            writable=[site / "locks" / "%i"],
            inaccessible=[site / "ca", site / "backend", site / "users", site / "broker"],
        ),
        ["", "[Install]", "WantedBy=multi-user.target"],
    )


def render_units(spec: UnitSpec) -> dict[str, str]:
    """File name -> unit text, for the four units."""
    return {
        BROKER_UNIT: render_broker_unit(spec),
        RADIO_HUB_UNIT: render_radio_hub_unit(spec),
        BACKEND_UNIT: render_backend_unit(spec),
        LOCK_UNIT: render_lock_unit(spec),
    }


# --- the machine -------------------------------------------------------------------------------


def smartlock_executable() -> Path:
    """The ``smartlock`` script of the running environment (its venv's bin/, else the PATH).

    ``sys.executable`` is not resolved: in a venv it is a link, and its directory is the venv's.
    """
    beside = Path(os.path.abspath(sys.executable)).parent / "smartlock"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("smartlock")
    if found is None:
        raise ConfigError(
            f"no smartlock executable beside {sys.executable} or on the PATH: install the "
            "project (pip install .) into the environment the services should run"
        )
    return Path(os.path.abspath(found))


def runtime_paths(executable: Path) -> tuple[Path, ...]:
    """Where the executable and its Python really live (links followed)."""
    return tuple(
        dict.fromkeys(
            [
                executable.resolve(),
                Path(sys.executable).resolve(),
                Path(sys.prefix).resolve(),
                Path(sys.base_prefix).resolve(),
            ]
        )
    )


def write_units(spec: UnitSpec, out: Path | None = None) -> list[Path]:
    """Write the four units into ``out`` (default SITE/systemd/); returns their paths.

    Also makes SITE/radio, so that the radio hub's ``ReadWritePaths=`` exists (systemd refuses
    to start a unit whose writable path is missing).
    """
    out = out or spec.site / UNITS_DIR
    out.mkdir(parents=True, exist_ok=True)
    (spec.site / "radio").mkdir(mode=0o700, exist_ok=True)
    written = []
    for name, text in render_units(spec).items():
        path = out / name
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)
    return written
