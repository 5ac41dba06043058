"""The systemd units (services_units.py, ``smartlock systemd-units``, ``init --systemd``), and the
container files (Dockerfile, compose.yaml), which cannot be built here: they are read as text.

``systemd-analyze verify`` checks the units when it is installed (``make systemd`` installs it).
It accepts the default ``User=smartlock`` although no such user exists here (it does not look
users up; a verify with ``User=nobody`` only adds "Special user nobody configured, this is not
safe!"), but it does check that the ExecStart executable exists, so the units are rendered with
this environment's real smartlock.  It exits 0 on unknown keys and bad values too, printing
one line each, so the test also requires that it says nothing about our units.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartlock import broker as broker_module
from smartlock.admin import create_site
from smartlock.broker import free_port
from smartlock.cli import app
from smartlock.core.errors import ConfigError
from smartlock.services_units import (
    BACKEND_UNIT,
    BROKER_UNIT,
    LOCK_UNIT,
    RADIO_HUB_UNIT,
    UnitSpec,
    render_units,
    runtime_paths,
    smartlock_executable,
    write_units,
)
from smartlock.site import Site

ROOT = Path(__file__).resolve().parents[1]
SITE = Path("/srv/smartlock/site")
EXE = Path("/opt/smartlock/bin/smartlock")
UNITS = (BROKER_UNIT, RADIO_HUB_UNIT, BACKEND_UNIT, LOCK_UNIT)
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "LockPersonality=yes",
    "RestrictRealtime=yes",
    "SystemCallArchitectures=native",
    "UMask=0077",
    "Restart=on-failure",
    "RestartSec=5",
)


def spec(**changes: object) -> UnitSpec:
    fields: dict[str, object] = {
        "site": SITE,
        "executable": EXE,
        "locks": ("lock_01", "lock_02"),
        "runtime": (Path("/usr/lib/python3.11"),),
    }
    fields.update(changes)
    return UnitSpec(**fields)  # type: ignore[arg-type]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def values(text: str, key: str) -> list[str]:
    """Every value of ``key`` in a unit, space-separated lists split."""
    return [
        word
        for line in lines(text)
        if line.startswith(f"{key}=")
        for word in line[len(key) + 1 :].split()
    ]


# --- rendering ---------------------------------------------------------------------------------


def test_every_unit_runs_this_environments_smartlock_on_the_absolute_site() -> None:
    units = render_units(spec())
    assert values(units[BROKER_UNIT], "ExecStart") == [str(EXE), "broker", "--site", str(SITE)]
    assert values(units[RADIO_HUB_UNIT], "ExecStart") == [
        str(EXE),
        "radio-hub",
        "--site",
        str(SITE),
    ]
    assert values(units[BACKEND_UNIT], "ExecStart") == [str(EXE), "backend", "--site", str(SITE)]
    assert values(units[LOCK_UNIT], "ExecStart") == [
        str(EXE), "lock", "supervise", "--id", "%i", "--site", str(SITE),
    ]  # fmt: skip


def test_every_unit_carries_the_hardening_lines() -> None:
    for name, text in render_units(spec()).items():
        for line in HARDENING:
            assert line in lines(text), (name, line)
        assert "ProtectHome=yes" in lines(text), name
        assert "PrivateTmp=yes" in lines(text), name
        assert values(text, "RestrictAddressFamilies"), name
        assert set(values(text, "RestrictAddressFamilies")) <= {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_each_unprivileged_service_writes_only_its_own_state_directory() -> None:
    units = render_units(spec())
    assert values(units[BACKEND_UNIT], "ReadWritePaths") == [f"{SITE}/backend"]
    assert values(units[LOCK_UNIT], "ReadWritePaths") == [f"{SITE}/locks/%i"]
    assert values(units[RADIO_HUB_UNIT], "ReadWritePaths") == [f"{SITE}/radio"]


def test_the_broker_writes_its_directory_and_the_site_root_but_never_sees_private_keys() -> None:
    """The site root is writable only because 'smartlock broker' chowns and chmods it on every
    start (grant_broker_access), which a read-only mount refuses; the unit says why."""
    text = render_units(spec())[BROKER_UNIT]
    assert values(text, "ReadWritePaths") == [f"{SITE}/broker", str(SITE)]
    assert "grant_broker_access" in text
    hidden = values(text, "InaccessiblePaths")
    assert hidden == [f"-{SITE}/{name}" for name in ("ca", "backend", "locks", "users")]


def test_the_services_see_no_private_keys_they_do_not_use() -> None:
    units = render_units(spec())
    assert f"-{SITE}/ca" in values(units[BACKEND_UNIT], "InaccessiblePaths")
    assert f"-{SITE}/locks" in values(units[BACKEND_UNIT], "InaccessiblePaths")
    assert {f"-{SITE}/backend", f"-{SITE}/users", f"-{SITE}/ca"} <= set(
        values(units[LOCK_UNIT], "InaccessiblePaths")
    )
    assert f"-{SITE}/backend" in values(units[RADIO_HUB_UNIT], "InaccessiblePaths")


def test_the_broker_starts_as_root_because_the_config_drops_to_mosquitto(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    units = render_units(spec())
    assert values(units[BROKER_UNIT], "User") == []
    assert "Mosquitto switches to that user" in units[BROKER_UNIT]
    for name in (RADIO_HUB_UNIT, BACKEND_UNIT, LOCK_UNIT):
        assert values(units[name], "User") == ["smartlock"]
        assert values(units[name], "Group") == ["smartlock"]
        assert "CapabilityBoundingSet=" in lines(units[name])  # empty: no capability at all
    # the claim the unit makes, checked against the code that writes the config
    monkeypatch.setattr(broker_module, "_running_as_root", lambda: True)
    fake = Site(
        root=tmp_path, name="s", broker_host="127.0.0.1", broker_port=8883, locks=("l",), users=()
    )
    assert "user mosquitto" in broker_module.render_config(fake).splitlines()


def test_backend_and_locks_start_after_the_broker_and_the_network() -> None:
    units = render_units(spec())
    for name in (BACKEND_UNIT, LOCK_UNIT):
        assert {"network-online.target", "smartlock-broker.service"} <= set(
            values(units[name], "After")
        )
        assert {"network-online.target", "smartlock-broker.service"} <= set(
            values(units[name], "Wants")
        )
    assert "smartlock-radio-hub.service" in values(units[LOCK_UNIT], "After")
    assert "smartlock-radio-hub.service" not in values(units[LOCK_UNIT], "Wants")
    assert "network-online.target" in values(units[BROKER_UNIT], "After")


def test_backend_with_http_serves_the_dashboard_and_may_write_what_enrollment_writes() -> None:
    text = render_units(spec(http="127.0.0.1:8080"))[BACKEND_UNIT]
    assert values(text, "ExecStart") == [
        str(EXE), "backend", "--http", "127.0.0.1:8080", "--site", str(SITE),
    ]  # fmt: skip
    assert values(text, "ReadWritePaths") == [
        f"{SITE}/backend", f"{SITE}/users", f"{SITE}/public/users", f"{SITE}/broker",
    ]  # fmt: skip


def test_a_site_under_home_keeps_home_read_only_instead_of_hidden() -> None:
    for name, text in render_units(spec(site=Path("/home/alice/site"))).items():
        assert "ProtectHome=read-only" in lines(text), name
    # this machine's case: the venv's Python links into /root/.pyenv
    text = render_units(spec(runtime=(Path("/root/.pyenv/versions/3.11.7/bin/python3.11"),)))
    assert "ProtectHome=read-only" in lines(text[BACKEND_UNIT])


def test_a_site_under_tmp_gets_no_private_tmp_that_would_hide_it() -> None:
    for name, text in render_units(spec(site=Path("/tmp/smartlock/site"))).items():
        assert "PrivateTmp=no" in lines(text), name
        assert "PrivateTmp=yes" not in lines(text), name


def test_the_lock_unit_explains_real_radios_and_gpio() -> None:
    text = render_units(spec())[LOCK_UNIT]
    assert "#   DeviceAllow=/dev/gpiochip0 rw" in text
    assert "AF_BLUETOOTH" in text
    assert "Description=smartlock lock agent %i" in text


def test_every_unit_says_how_to_install_it() -> None:
    for name, text in render_units(spec()).items():
        assert text.startswith(f"# {name}: "), name
        assert (
            f"cp {SITE}/systemd/*.service /etc/systemd/system/ && systemctl daemon-reload" in text
        )
        assert "smartlock-lock@lock_01 smartlock-lock@lock_02" in text


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("site", Path("relative/site"), "must be absolute"),
        ("site", Path("/srv/my site"), "reads specially"),
        ("site", Path("/srv/100%"), "reads specially"),
        ("executable", Path("/opt/$HOME/smartlock"), "reads specially"),
        ("user", "Root User", "not a valid user name"),
        ("http", "127.0.0.1:80 --evil", "reads specially"),
    ],
)
def test_a_path_or_name_systemd_would_misread_is_refused(
    field: str, value: object, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        spec(**{field: value})


def test_write_units_puts_four_files_in_the_site_and_makes_the_radio_directory(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    written = write_units(spec(site=site))
    assert sorted(p.name for p in written) == sorted(UNITS)
    assert {p.parent for p in written} == {site / "systemd"}
    assert (site / "radio").is_dir()
    assert (site / "systemd" / BACKEND_UNIT).stat().st_mode & 0o777 == 0o644


# --- systemd-analyze ---------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="make systemd installs it")
@pytest.mark.parametrize(
    ("site", "http"),
    [(SITE, None), (Path("/tmp/smartlock/site"), "127.0.0.1:8080"), (Path("/home/a/site"), None)],
)
def test_systemd_analyze_verify_accepts_all_four_units(
    tmp_path: Path, site: Path, http: str | None
) -> None:
    executable = smartlock_executable()
    units = render_units(
        UnitSpec(
            site=site, executable=executable, locks=("lock_01",), http=http,
            runtime=runtime_paths(executable),
        )
    )  # fmt: skip
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    shutil.copy(tmp_path / LOCK_UNIT, tmp_path / "smartlock-lock@lock_01.service")  # an instance
    names = [BROKER_UNIT, RADIO_HUB_UNIT, BACKEND_UNIT, "smartlock-lock@lock_01.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name in names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    about_ours = [
        line for line in output.splitlines() if "smartlock" in line or str(tmp_path) in line
    ]
    assert about_ours == [], output


# --- the command line --------------------------------------------------------------------------


runner = CliRunner()


def test_systemd_units_writes_the_units_of_an_existing_site(tmp_path: Path) -> None:
    site = create_site(
        tmp_path / "site", locks=["front"], owners=["o"], guests=[], broker_port=free_port()
    )
    out = tmp_path / "units"
    result = runner.invoke(
        app, ["systemd-units", "--site", str(site.root), "--user", "locksvc", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    backend = (out / BACKEND_UNIT).read_text()
    assert "User=locksvc" in backend
    assert f"--site {site.root}" in backend
    assert "smartlock-lock@front" in backend
    assert f"ExecStart={smartlock_executable()} backend" in backend


def test_systemd_units_refuses_a_bad_user_name_in_one_line(tmp_path: Path) -> None:
    site = create_site(
        tmp_path / "site", locks=["front"], owners=["o"], guests=[], broker_port=free_port()
    )
    result = runner.invoke(app, ["systemd-units", "--site", str(site.root), "--user", "Bad User"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


def test_init_with_systemd_writes_the_units_into_the_new_site(tmp_path: Path) -> None:
    root = tmp_path / "site"
    result = runner.invoke(app, ["init", str(root), "--systemd"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (root / "systemd").iterdir()) == sorted(UNITS)
    assert f"systemd units in {root.resolve() / 'systemd'}" in result.stdout


def test_init_without_systemd_writes_no_units(tmp_path: Path) -> None:
    root = tmp_path / "site"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    assert not (root / "systemd").exists()


# --- containers --------------------------------------------------------------------------------


def _compose() -> dict[str, dict[str, object]]:
    yaml = pytest.importorskip("yaml")
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services: dict[str, dict[str, object]] = loaded["services"]
    return services


def _init_port(text: str) -> str:
    found = re.search(r"smartlock init /site .*--port (\d+)", text)
    assert found is not None
    return found[1]


def test_compose_publishes_only_the_brokers_tls_port_read_as_text() -> None:
    """Without PyYAML (not a dependency): one 'ports:' key, in the broker's block, one mapping."""
    text = (ROOT / "compose.yaml").read_text()
    port = _init_port(text)
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert code.count("ports:") == 1
    assert "expose:" not in code
    assert "network_mode" not in code
    broker_block = code.split("\n  broker:\n", 1)[1].split("\n\n", 1)[0]
    assert "    ports:\n" in broker_block
    assert f'      - "{port}:{port}"' in broker_block


def test_compose_publishes_only_the_brokers_tls_port() -> None:
    port = _init_port((ROOT / "compose.yaml").read_text())
    services = _compose()
    assert set(services) >= {"init", "broker", "backend", "lock_01"}
    published = {name: svc.get("ports") for name, svc in services.items() if svc.get("ports")}
    assert published == {"broker": [f"{port}:{port}"]}
    assert not any("expose" in svc or "network_mode" in svc for svc in services.values())


def test_compose_shares_one_site_volume_provisioned_once_by_init() -> None:
    services = _compose()
    for name, svc in services.items():
        assert svc["volumes"] == ["site:/site"], name
    assert services["init"]["restart"] == "no"
    for name in ("broker", "backend", "lock_01"):
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict)
        assert depends["init"] == {"condition": "service_completed_successfully"}, name


def test_compose_keeps_the_dashboard_on_loopback_inside_the_backend() -> None:
    command = _compose()["backend"]["command"]
    assert isinstance(command, list)
    assert command[command.index("--http") + 1].startswith("127.0.0.1:")


def test_dockerfile_installs_mosquitto_and_runs_smartlock_as_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3.11-slim-bookworm$", text, re.MULTILINE)
    assert "install -y --no-install-recommends mosquitto" in text
    assert "pip install --no-cache-dir ." in text
    assert re.search(r"^USER smartlock$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["smartlock"]' in text
