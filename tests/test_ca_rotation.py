"""``smartlock rotate ca``: the next CA is trusted next to the current one, then becomes the
site CA, on a site provisioned in a temporary directory (no broker running: the TLS checks
are handshakes in memory).  Each step is interrupted at every write to show that a crash never
leaves a ca.crt without the broker's CA, and that running the step again completes it."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner, Result

from site_copies import copy_site
from smartlock import broker as broker_module
from smartlock import doctor
from smartlock.admin import create_site
from smartlock.broker import (
    client_tls_context,
    finish_ca_rotation,
    free_port,
    grant_broker_access,
    next_ca,
    rotate_broker_certificate,
    site_ca,
    start_ca_rotation,
)
from smartlock.cli import app
from smartlock.core.errors import ConfigError
from smartlock.crypto import CertifiedKey, make_server_certificate
from smartlock.site import Site

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = 86400
runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return create_site(
        tmp_path_factory.mktemp("template") / "site",
        locks=["lock_01"],
        owners=["owner"],
        guests=["guest_01"],
        broker_host="127.0.0.1",
        broker_port=free_port(),
    )


def copy_of(template: Site, root: Path) -> Site:
    copied = copy_site(template, root)
    grant_broker_access(copied)
    return copied


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    return copy_of(template, tmp_path / "site")


def bundle(site: Site) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(site.ca_cert.read_bytes())


def broker_certificate(site: Site) -> x509.Certificate:
    return x509.load_pem_x509_certificate((site.broker_dir / "broker.crt").read_bytes())


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def handshake(site: Site, server: CertifiedKey, tmp_path: Path) -> None:
    """A TLS handshake in memory: a server showing ``server`` and a client built like every
    smartlock client (:func:`client_tls_context`, so it trusts the site's ca.crt)."""
    (tmp_path / "server.key").write_bytes(server.key_pem)
    (tmp_path / "server.crt").write_bytes(server.cert_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_tls_context(site).wrap_bio(
        to_client, to_server, server_hostname=site.broker_host
    )
    server_end = server_context.wrap_bio(to_server, to_client, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server_end)):
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        if all(done.values()):
            return
    raise AssertionError("the handshake did not complete")


# --- starting ------------------------------------------------------------------------------


def test_starting_keeps_the_next_ca_aside_and_makes_ca_crt_trust_both(site: Site) -> None:
    current = bundle(site)
    ca_key = site.ca_key.read_bytes()
    broker_crt = (site.broker_dir / "broker.crt").read_bytes()

    cert = start_ca_rotation(site, now=NOW)

    assert mode(site.next_ca_key) == 0o600
    assert x509.load_pem_x509_certificate(site.next_ca_cert.read_bytes()) == cert
    assert bundle(site) == [*current, cert]  # the current CA first, then the next one
    assert site.ca_key.read_bytes() == ca_key  # the current CA stays the CA
    assert (site.broker_dir / "broker.crt").read_bytes() == broker_crt  # nothing else changes
    assert mode(site.ca_cert) == 0o644
    assert next_ca(site) is not None


def test_the_next_ca_is_made_like_the_provisioned_one(site: Site) -> None:
    (current,) = bundle(site)
    cert = start_ca_rotation(site, now=NOW, days=400)
    assert cert.subject == current.subject
    assert cert.issuer == cert.subject  # self-signed
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == current.signature_hash_algorithm.name  # type: ignore[union-attr]
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == current.public_key().curve.name  # type: ignore[union-attr]
    assert len(cert.extensions) == len(current.extensions)
    for extension in current.extensions:
        ours = cert.extensions.get_extension_for_oid(extension.oid)
        assert ours.critical == extension.critical
        if not isinstance(extension.value, x509.SubjectKeyIdentifier):
            assert ours.value == extension.value
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=400)
    assert cert.serial_number != current.serial_number


def test_a_second_start_is_refused_and_changes_nothing(site: Site) -> None:
    start_ca_rotation(site, now=NOW)
    files = {p: p.read_bytes() for p in (site.ca_cert, site.next_ca_key, site.next_ca_cert)}
    with pytest.raises(ConfigError, match="a CA rotation is already started"):
        start_ca_rotation(site, now=NOW)
    assert {p: p.read_bytes() for p in files} == files


def test_a_ca_lasts_1_to_3650_days(site: Site) -> None:
    with pytest.raises(ConfigError, match="1 to 3650 days"):
        start_ca_rotation(site, now=NOW, days=0)
    assert not site.next_ca_key.exists()


def test_while_started_a_client_accepts_a_broker_certificate_from_either_ca(
    site: Site, tmp_path: Path
) -> None:
    current = site_ca(site)
    start_ca_rotation(site, now=NOW)
    incoming = next_ca(site)
    assert incoming is not None
    for ca in (current, incoming):
        handshake(site, make_server_certificate(ca, ["127.0.0.1"], now=NOW), tmp_path)


def test_rotating_the_broker_certificate_mid_rotation_uses_the_current_ca(site: Site) -> None:
    current = bundle(site)[0]
    start_ca_rotation(site, now=NOW)
    cert, _ = rotate_broker_certificate(site, now=NOW)
    assert issued_by(cert, current)


# --- finishing -----------------------------------------------------------------------------


def test_finishing_without_a_start_is_refused(site: Site) -> None:
    ca_crt = site.ca_cert.read_bytes()
    with pytest.raises(ConfigError, match="no CA rotation is started"):
        finish_ca_rotation(site, now=NOW)
    assert site.ca_cert.read_bytes() == ca_crt


def test_finishing_makes_the_next_ca_the_site_ca(site: Site) -> None:
    old = bundle(site)[0]
    started = start_ca_rotation(site, now=NOW)
    next_key = site.next_ca_key.read_bytes()

    ca, broker_cert, reloaded = finish_ca_rotation(site, now=NOW)

    assert ca == started
    assert not reloaded  # no broker runs here
    assert bundle(site) == [started]  # ca.crt holds the new CA alone
    assert site.ca_key.read_bytes() == next_key  # the old key is gone
    assert mode(site.ca_key) == 0o600
    assert mode(site.ca_cert) == 0o644
    assert not site.next_ca_key.exists()
    assert not site.next_ca_cert.exists()
    assert broker_certificate(site) == broker_cert
    assert issued_by(broker_cert, started)
    assert not issued_by(broker_cert, old)
    assert doctor.check_broker_files(site).ok  # still readable by the broker
    assert site_ca(site).cert_pem == site.ca_cert.read_bytes()


def test_after_finishing_only_the_new_ca_is_trusted(site: Site, tmp_path: Path) -> None:
    old = site_ca(site)
    start_ca_rotation(site, now=NOW)
    finish_ca_rotation(site, now=NOW)
    new_server = CertifiedKey(
        (site.broker_dir / "broker.key").read_bytes(),
        (site.broker_dir / "broker.crt").read_bytes(),
    )
    handshake(site, new_server, tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(site, make_server_certificate(old, ["127.0.0.1"], now=NOW), tmp_path)


def test_finishing_keeps_both_cas_trusted_while_the_broker_shows_the_old_certificate(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running broker that does not switch (SIGHUP lost, broker stuck): ca.crt keeps trusting
    the old CA, whose certificate it still shows, and the step can be run again."""
    old_broker = broker_certificate(site)
    start_ca_rotation(site, now=NOW)
    monkeypatch.setattr(broker_module, "reload_broker", lambda _site: True)
    monkeypatch.setattr(broker_module, "served_certificate", lambda _site: old_broker)
    with pytest.raises(ConfigError, match=r"did not show its new certificate within 0\.2 s"):
        finish_ca_rotation(site, now=NOW, timeout_s=0.2)
    assert len(bundle(site)) == 2
    assert next_ca(site) is not None  # still started
    monkeypatch.setattr(broker_module, "served_certificate", lambda _site: broker_certificate(site))
    finish_ca_rotation(site, now=NOW, timeout_s=0.2)
    assert len(bundle(site)) == 1
    assert_sound(site)


def test_a_second_finish_is_refused_and_a_new_rotation_can_start(site: Site) -> None:
    start_ca_rotation(site, now=NOW)
    finish_ca_rotation(site, now=NOW)
    with pytest.raises(ConfigError, match="no CA rotation is started"):
        finish_ca_rotation(site, now=NOW)
    second = start_ca_rotation(site, now=NOW)
    finish_ca_rotation(site, now=NOW)
    assert bundle(site) == [second]
    cert, _ = rotate_broker_certificate(site, now=NOW)  # the usual rotation uses the new CA
    assert issued_by(cert, second)


# --- a crash at any point --------------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def assert_sound(site: Site) -> None:
    """ca.crt trusts the CA that signed the broker's certificate, and doctor sees no failure
    in the CA (a half-done step reads as a started rotation or as no rotation)."""
    assert any(issued_by(broker_certificate(site), ca) for ca in bundle(site))
    assert doctor.check_broker_certificate(site, now=NOW.timestamp()).ok
    assert doctor.check_ca_certificate(site, now=NOW.timestamp()).ok


def test_a_start_interrupted_anywhere_is_completed_by_running_it_again(
    template: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes = 0
    for point in range(1, 20):
        site = copy_of(template, tmp_path / f"site-{point}")
        with monkeypatch.context() as patch:
            _crash_on_change(patch, point)
            try:
                start_ca_rotation(site, now=NOW)
            except Crash:
                crashes += 1
            else:
                break
        assert_sound(site)
        left = "did not complete: run it again" if site.next_ca_cert.exists() else "starts one$"
        with pytest.raises(ConfigError, match=f"no CA rotation is started.*{left}"):
            finish_ca_rotation(site, now=NOW)  # nothing trusts the next CA yet
        cert = start_ca_rotation(site, now=NOW)
        assert bundle(site)[-1] == cert
        assert_sound(site)
        finish_ca_rotation(site, now=NOW)
        assert bundle(site) == [cert]
        assert_sound(site)
    assert crashes == 3  # the next key, the next certificate, ca.crt


def test_a_finish_interrupted_anywhere_is_completed_by_running_it_again(
    template: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes = 0
    for point in range(1, 30):
        site = copy_of(template, tmp_path / f"site-{point}")
        cert = start_ca_rotation(site, now=NOW)
        with monkeypatch.context() as patch:
            _crash_on_change(patch, point)
            try:
                finish_ca_rotation(site, now=NOW)
            except Crash:
                crashes += 1
            else:
                break
        assert_sound(site)
        with pytest.raises(ConfigError, match="a CA rotation is already started"):
            start_ca_rotation(site, now=NOW)  # a half finished rotation is still started
        finish_ca_rotation(site, now=NOW)
        assert bundle(site) == [cert]
        assert not site.next_ca_key.exists()
        assert not site.next_ca_cert.exists()
        assert site_ca(site).cert_pem == site.ca_cert.read_bytes()
        assert issued_by(broker_certificate(site), cert)
        assert_sound(site)
    # broker.key.new, broker.crt.new, broker.key, broker.crt, ca.crt, ca.key, next.crt
    assert crashes == 7


def _crash_on_change(patch: pytest.MonkeyPatch, point: int) -> None:
    """The ``point``-th file system change (a rename into place, or removing a file that is
    not a temporary one) raises :class:`Crash` instead of happening."""
    real_replace, real_unlink = os.replace, Path.unlink
    count = [0]

    def change() -> None:
        count[0] += 1
        if count[0] == point:
            raise Crash

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        change()
        real_replace(src, dst)

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if not path.name.startswith("."):
            change()
        real_unlink(path, missing_ok=missing_ok)

    patch.setattr(os, "replace", replace)
    patch.setattr(Path, "unlink", unlink)


def test_broker_certificate_rotation_refuses_a_half_finished_ca_rotation(site: Site) -> None:
    """Between ca.crt becoming the new CA alone and ca/next.key moving to ca/ca.key, the
    current key belongs to no trusted certificate: signing with it would break the broker."""
    start_ca_rotation(site, now=NOW)
    incoming = next_ca(site)
    assert incoming is not None
    rotate_broker_certificate(site, now=NOW, ca=incoming)
    site.ca_cert.write_bytes(incoming.cert_pem)  # as a crash right after that step leaves it
    with pytest.raises(ConfigError, match="rotate ca --finish' completes it"):
        rotate_broker_certificate(site, now=NOW)
    finish_ca_rotation(site, now=NOW)
    rotate_broker_certificate(site, now=NOW)
    assert_sound(site)


# --- doctor --------------------------------------------------------------------------------


def test_doctor_reports_a_started_rotation_as_passing_with_a_note(site: Site) -> None:
    start_ca_rotation(site, now=NOW, days=400)
    checks = {check.name: check for check in doctor.run_checks(site, now=NOW.timestamp())}
    ca = checks["CA certificate"]
    assert ca.ok, ca
    assert ca.detail.startswith("current CA valid until ")
    assert "; next CA valid until " in ca.detail
    assert "(400 days)" in ca.detail
    assert "a CA rotation is started" in ca.detail
    assert f"smartlock rotate ca --finish --site {site.root}" in ca.detail
    broker = checks["broker certificate"]
    assert broker.ok, broker
    assert broker.detail.startswith("signed by CA 1 of the 2 in ca.crt")
    assert checks["CA key"].ok
    assert checks["CA key"].detail.startswith("2 files, 0600")


def test_doctor_checks_the_expiry_of_each_ca_in_the_bundle(site: Site) -> None:
    start_ca_rotation(site, now=NOW, days=40)
    later = NOW.timestamp() + 30 * DAY  # the next CA expires in 10 days, the current one later
    check = doctor.check_ca_certificate(site, now=later)
    assert not check.ok
    assert "next CA expires in 10 days" in check.detail
    assert check.fix.startswith(f"smartlock rotate ca --finish --site {site.root}, then rotate")


def test_doctor_asks_to_finish_a_rotation_when_the_current_ca_expires_soon(site: Site) -> None:
    start_ca_rotation(site, now=NOW + dt.timedelta(days=100))
    later = NOW.timestamp() + 3630 * DAY  # the current CA expires in 20 days, the next later
    check = doctor.check_ca_certificate(site, now=later)
    assert not check.ok
    assert check.detail.startswith("current CA expires in 20 days")
    assert "; next CA valid until " in check.detail
    assert (
        check.fix == f"smartlock rotate ca --finish --site {site.root} (a CA rotation is started)"
    )


def test_doctor_fails_a_started_rotation_whose_next_ca_is_unreadable(site: Site) -> None:
    start_ca_rotation(site, now=NOW)
    site.next_ca_key.unlink()
    check = doctor.check_ca_certificate(site, now=NOW.timestamp())
    assert not check.ok
    assert check.detail.startswith("a CA rotation is started, but its new CA cannot be used")
    assert "next.key" in check.fix
    with pytest.raises(ConfigError, match="is missing or does not belong to"):
        finish_ca_rotation(site, now=NOW)


def test_doctor_fails_a_broker_certificate_from_neither_ca_of_the_bundle(site: Site) -> None:
    start_ca_rotation(site, now=NOW)
    finish_ca_rotation(site, now=NOW)
    start_ca_rotation(site, now=NOW)
    site.ca_cert.write_bytes(site.next_ca_cert.read_bytes())  # the broker's CA left out
    check = doctor.check_broker_certificate(site, now=NOW.timestamp())
    assert not check.ok
    assert check.detail == "not signed by the site CA (ca.crt)"


def test_doctor_after_a_finished_rotation_reports_the_new_ca_alone(site: Site) -> None:
    start_ca_rotation(site, now=NOW, days=500)
    finish_ca_rotation(site, now=NOW)
    checks = {check.name: check for check in doctor.run_checks(site, now=NOW.timestamp())}
    assert checks["CA certificate"].ok
    assert checks["CA certificate"].detail.startswith("valid until ")
    assert checks["CA certificate"].detail.endswith("(500 days)")
    assert checks["broker certificate"].detail.startswith("signed by the site CA, for ")
    assert checks["CA key"].detail.startswith("1 file, 0600")


# --- the command -----------------------------------------------------------------------------


def rotate(site: Site, *args: str) -> Result:
    return runner.invoke(app, ["rotate", "ca", *args, "--site", str(site.root)])


def test_the_command_says_what_happened_and_what_to_do_next(site: Site) -> None:
    keys = [site.ca_key.read_bytes()]
    started = rotate(site)
    assert started.exit_code == 0, started.output
    assert "holds the current CA and the new one" in started.stdout
    assert f"need the new bundle before you finish: {site.ca_cert}" in started.stdout
    assert f"Then: smartlock rotate ca --finish --site {site.root}" in started.stdout
    keys.append(site.next_ca_key.read_bytes())

    again = rotate(site)
    assert again.exit_code == 2
    assert again.output.strip().startswith("error: a CA rotation is already started")
    assert len(again.output.strip().splitlines()) == 1

    finished = rotate(site, "--finish")
    assert finished.exit_code == 0, finished.output
    assert "is the site CA now" in finished.stdout
    assert "No broker of this site is running" in finished.stdout

    for key in keys:  # no secret in any output
        body = [line for line in key.decode().splitlines() if "PRIVATE KEY" not in line]
        for output in (started.output, again.output, finished.output):
            assert not any(line in output for line in body)


def test_the_command_refuses_a_finish_without_a_start_and_days_with_finish(site: Site) -> None:
    result = rotate(site, "--finish")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: no CA rotation is started: 'smartlock rotate ca' starts one"
    )
    result = rotate(site, "--finish", "--days", "100")
    assert result.exit_code == 2
    assert "--days is for starting a rotation" in result.output
