"""Running the real ``toktok`` command in a subprocess, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

PASSPHRASE = "correct horse battery"


def toktok_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TOKTOK_PASSPHRASE"] = PASSPHRASE
    env.pop("TOKTOK_HOME", None)
    env.update(extra)
    return env


def toktok(
    home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``toktok --home HOME ARGS...`` and return the finished process."""
    proc = subprocess.run(
        [sys.executable, "-m", "node.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env or toktok_env(),
        timeout=300,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"toktok {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc
