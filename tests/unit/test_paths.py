"""Default folders are per user and private (runtime.paths)."""

import os
import stat
import subprocess
import sys

import pytest

from runtime import paths


def test_home_follows_flshell_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FLSHELL_HOME", str(tmp_path / "h"))
    assert paths.default("poc") == tmp_path / "h" / "poc"
    assert paths.ensure(paths.default("simulation", "job")).is_dir()


def test_without_flshell_home_each_user_has_a_temp_folder_of_their_own(monkeypatch, tmp_path):
    monkeypatch.delenv("FLSHELL_HOME")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # recomputed from TMPDIR
    home = paths.home()
    assert home.parent == tmp_path and home.name.startswith("flshell-") and home.name != "flshell"
    paths.ensure(paths.default("local"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_shared_root_is_made_private(monkeypatch, tmp_path):
    monkeypatch.delenv("FLSHELL_HOME")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    paths.home().mkdir(mode=0o777)
    os.chmod(paths.home(), 0o777)
    paths.ensure(paths.default("poc"))
    assert stat.S_IMODE(paths.home().stat().st_mode) == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a folder owned by another user")
def test_a_root_owned_by_another_user_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("FLSHELL_HOME", str(tmp_path / "theirs"))
    (tmp_path / "theirs").mkdir()
    os.chown(tmp_path / "theirs", 12345, 12345)
    with pytest.raises(PermissionError, match="belongs to another user.*FLSHELL_HOME"):
        paths.ensure(paths.default("poc"))


def test_the_cli_defaults_name_the_users_folder(tmp_path):
    env = {**os.environ, "FLSHELL_HOME": str(tmp_path / "mine"), "COLUMNS": "400"}
    out = subprocess.run([sys.executable, "-m", "flshell.cli", "sim", "--help"], env=env,
                         capture_output=True, text=True, timeout=60).stdout
    assert str(tmp_path / "mine" / "simulation") in " ".join(out.split())
    assert "/tmp/flshell/" not in out
