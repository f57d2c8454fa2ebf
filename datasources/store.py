"""Where data live and how they arrive: one cache folder and one downloader."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence

ENV_VAR = "STABILIZERS_DATA"
"""The environment variable that names the cache folder."""


class DownloadError(OSError):
    """No address of a file answered (offline, or every mirror moved)."""


def cache_dir() -> str:
    """The folder for downloaded and generated data: `$STABILIZERS_DATA`, else
    `~/.cache/stabilizers`."""
    return os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "stabilizers")


def fetch(
    filename: str, urls: Sequence[str], directory: str | None = None, *, download: bool = True
) -> str:
    """The path of `directory/filename`, downloaded first when it is missing.

    The mirrors in `urls` are tried in order; the file is written under a temporary name
    and renamed once complete, so an interrupted download leaves no partial file.

    Args:
      filename: the file's name inside `directory`.
      urls: its addresses, tried in order.
      directory: where it is kept (default `cache_dir()`).
      download: fetch a missing file; when false, a missing file raises.

    Returns:
      The file's path.

    Raises:
      FileNotFoundError: the file is missing and `download` is false.
      DownloadError: the file is missing and no address answered.
    """
    directory = directory or cache_dir()
    path = os.path.join(directory, filename)
    if os.path.exists(path):
        return path
    if not download:
        raise FileNotFoundError(
            f"{path} not found: download {urls[0]} into {directory}, or pass download=True"
        )
    os.makedirs(directory, exist_ok=True)
    errors = []
    for url in urls:
        tmp = f"{path}.{os.getpid()}.part"
        try:
            urllib.request.urlretrieve(url, tmp)
        except OSError as e:  # unreachable or moved: try the next mirror
            errors.append(f"  {url}: {e}")
            if os.path.exists(tmp):
                os.remove(tmp)
            continue
        os.replace(tmp, path)
        return path
    raise DownloadError(
        f"could not download {filename}: no address answered (is this machine offline?). "
        f"Put the file at {path} by hand, or set {ENV_VAR} to a folder that holds it.\n"
        + "\n".join(errors)
    )
