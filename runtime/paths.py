"""Default folders: one per user (never a fixed /tmp path that every user of a host shares).

`FLSHELL_HOME` names the root when set; otherwise it is `flshell-<user>` in the user's temp
folder (`$TMPDIR`, else /tmp). The root is made private to its user (mode 0700), and a root
that another user owns is refused: nobody can plant a POC or a workspace for you.
"""

from __future__ import annotations

import getpass
import os
import stat
import tempfile
from pathlib import Path


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers): the uid names the folder
        return str(os.getuid())


def home() -> Path:
    """The root of every default folder (not created here: see `ensure`)."""
    env = os.environ.get("FLSHELL_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return Path(tempfile.gettempdir()) / f"flshell-{_user()}"


def default(*parts: str) -> Path:
    """A default folder under `home()`: default("poc"), default("simulation", job_name)."""
    return home().joinpath(*parts)


def ensure(path: Path) -> Path:
    """Make `path` (under `home()` when it is a default) and check the root is this user's."""
    root = home()
    if root == path or root in path.parents:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.stat()
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise PermissionError(f"{root} belongs to another user (uid {st.st_uid}); set "
                                  "FLSHELL_HOME to a folder of your own")
        if stat.S_IMODE(st.st_mode) & 0o077 and not os.environ.get("FLSHELL_HOME"):
            os.chmod(root, 0o700)
    path.mkdir(parents=True, exist_ok=True)
    return path
