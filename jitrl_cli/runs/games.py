"""Getting games: the Jericho game suite archive, downloaded with a progress bar."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from jitrl_cli.errors import UserError
from jitrl_cli.paths import STORY_SUFFIXES

#: The archive Jericho's documentation points to (its jericho-game-suite/ folder holds the games).
SUITE_URL = "https://github.com/BYU-PCCL/z-machine-games/archive/master.zip"
URL_ENV = "JITRL_GAMES_URL"


def download_suite(dest: Path, url: str | None = None, quiet: bool = False) -> list[Path]:
    """Download the game suite zip and extract its story files into ``dest``.

    Args:
        dest: target directory (created).
        url: archive URL (default ``$JITRL_GAMES_URL`` or :data:`SUITE_URL`); ``file://`` works.
        quiet: no progress bar.

    Returns:
        the extracted story files.

    Raises:
        UserError: when the download fails or the archive holds no story files.
    """
    url = url or os.environ.get(URL_ENV) or SUITE_URL
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "games.zip"
        try:
            with urllib.request.urlopen(url, timeout=30) as response, archive.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), disable=quiet) as progress:
                    task = progress.add_task("download", total=total)
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        progress.advance(task, len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"cannot download {url}: {reason}") from None
        try:
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.infolist() if Path(m.filename).suffix.lower() in STORY_SUFFIXES and not m.is_dir()]
                extracted = []
                for m in members:
                    target = dest / Path(m.filename).name
                    with zf.open(m) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
                    extracted.append(target)
        except zipfile.BadZipFile:
            raise UserError(f"{url} is not a zip archive") from None
    if not extracted:
        raise UserError(f"{url} holds no Z-machine story files")
    return sorted(extracted)
