"""`sidecar db upgrade` works from an installed wheel, not only from a checkout: the top-level
migrations/ ship inside the wheel as sidecar/_migrations."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
import sidecar
assert sidecar.__file__.startswith(sys.argv[1]), sidecar.__file__
from sidecar.cli.main import main
sys.argv = ["sidecar", "db", "upgrade", "--db", sys.argv[2]]
main()
"""


@pytest.mark.timeout(180)
def test_wheel_carries_migrations_and_upgrades_a_database(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=150,
    )
    (wheel,) = (tmp_path / "dist").glob("ai_stream_sidecar-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sidecar/_migrations/env.py" in names
    assert any(n.startswith("sidecar/_migrations/versions/0001") for n in names)
    assert "sidecar/data/demo-prices.toml" in names
    assert "sidecar/live/ui.html" in names  # the admin /ui page
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    # Run from elsewhere with the wheel's code first on the path: no checkout involved.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(installed),
            url,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "is at revision" in result.stdout
