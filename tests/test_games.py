"""Finding games, and `jitrl games download` against a local archive (never the internet)."""

import zipfile

from jitrl_cli.paths import find_game
from tests.conftest import run_cli


def _suite_zip(tmp_path, zork1):
    archive = tmp_path / "suite.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("z-machine-games-master/jericho-game-suite/zork1.z5", zork1.read_bytes())
        zf.writestr("z-machine-games-master/README.md", "games")
    return archive


def test_download_extracts_story_files_and_play_finds_them(tmp_path, zork1):
    archive = _suite_zip(tmp_path, zork1)
    dest = tmp_path / "games"
    proc = run_cli("games", "download", "--dest", str(dest), "--url", archive.as_uri())
    assert proc.returncode == 0, proc.stderr
    assert "1 games in" in proc.stdout
    assert (dest / "zork1.z5").read_bytes() == zork1.read_bytes()
    assert not (dest / "README.md").exists()
    assert find_game("zork1", rom_dir=dest) == dest / "zork1.z5"


def test_download_failure_is_one_line(tmp_path):
    proc = run_cli("games", "download", "--dest", str(tmp_path / "g"), "--url", (tmp_path / "missing.zip").as_uri())
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot download") and len(proc.stderr.strip().splitlines()) == 1
    not_zip = tmp_path / "x.zip"
    not_zip.write_text("hello")
    proc = run_cli("games", "download", "--dest", str(tmp_path / "g"), "--url", not_zip.as_uri())
    assert proc.returncode == 2 and "is not a zip archive" in proc.stderr


def test_search_order_rom_dir_then_env(tmp_path, zork1, monkeypatch):
    first = tmp_path / "first"
    first.mkdir()
    (first / "zork1.z5").write_bytes(zork1.read_bytes())
    assert find_game("zork1", rom_dir=first) == first / "zork1.z5"
    assert find_game("zork1") == zork1  # from $JITRL_GAMES_DIR
    monkeypatch.setenv("JITRL_GAMES_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert find_game("zork1") is None
    assert find_game(str(zork1)) == zork1


def test_games_list(games_dir):
    proc = run_cli("games", "list")
    assert proc.returncode == 0
    assert "zork1" in proc.stdout and "detective" in proc.stdout
