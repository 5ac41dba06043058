"""``smartlock release keygen | sign | verify`` as the release manager types them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from smartlock.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_keygen_sign_and_verify_a_release(tmp_path: Path) -> None:
    code, out = _run("release", "keygen", str(tmp_path))
    assert code == 0, out
    assert (tmp_path / "release.key").stat().st_mode & 0o777 == 0o600
    wheel = tmp_path / "agent.whl"
    wheel.write_bytes(b"wheel bytes " * 100)
    code, out = _run(
        "release", "sign", str(wheel), "--key", str(tmp_path / "release.key"), "--version", "1.4.0"
    )
    assert code == 0, out
    bundle = tmp_path / "smartlock-agent-1.4.0.slu"
    assert bundle.exists()
    code, out = _run("release", "verify", str(bundle), "--pub", str(tmp_path / "release.pub"))
    assert (code, out.startswith("OK: smartlock-lock-agent 1.4.0")) == (0, True), out
    code, out = _run(
        "release", "verify", str(bundle), "--pub", str(tmp_path / "release.pub"),
        "--installed", "1.4.0",
    )  # fmt: skip
    assert code == 1
    assert "refused (not_newer)" in out


def test_a_second_keygen_does_not_replace_the_pinned_key(tmp_path: Path) -> None:
    assert _run("release", "keygen", str(tmp_path))[0] == 0
    before = (tmp_path / "release.key").read_bytes()
    code, out = _run("release", "keygen", str(tmp_path))
    assert code == 2
    assert "made once" in out
    assert (tmp_path / "release.key").read_bytes() == before


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert _run("release", "keygen", str(tmp_path))[0] == 0
    wheel = tmp_path / "agent.whl"
    wheel.write_bytes(b"x")
    key = str(tmp_path / "release.key")
    for args, says in (
        (("release", "sign", str(wheel), "--key", key, "--version", "1.02.0"), "X.Y.Z"),
        (
            ("release", "sign", str(tmp_path / "nope"), "--key", key, "--version", "1.0.0"),
            "cannot read",
        ),
        (("release", "sign", str(wheel), "--key", str(wheel), "--version", "1.0.0"), "not"),
    ):
        code, out = _run(*args)
        assert code == 2, out
        assert says in out
        assert "Traceback" not in out
