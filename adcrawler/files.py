"""Files and directories the crawler creates are private to its user: 0600 and 0700.

The database, the spool, the job directory and the stats files hold client
data; no other user of the machine needs to read them. The project's commands
also set the process umask to 077, which covers the files other libraries
create for us (SQLite's -wal and -shm files); the helpers here make the modes
explicit wherever we create a file ourselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

PRIVATE_UMASK = 0o077


def private_dir(path: str | Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700; return it."""
    path = Path(path)
    missing = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    return path


def open_private(path: str | Path, mode: str = "a") -> IO[str]:
    """Open a text file for writing (``a`` or ``w``), created with mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    private_dir(Path(path).parent)
    return os.fdopen(os.open(path, flags, 0o600), mode, encoding="utf-8")


def write_private(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (readers never see half a file), mode 0600."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open_private(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
