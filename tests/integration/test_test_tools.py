"""The tools two tests need beyond pip (chromium, shellcheck) are installed by
``make install`` and ``.ci/run`` when they can be (issue 12 #19)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ci" / "install-test-tools.sh"


def test_ci_and_make_install_run_the_script() -> None:
    assert "ci/install-test-tools.sh" in (REPO / ".ci" / "run").read_text()
    makefile = (REPO / "Makefile").read_text()
    install = makefile[makefile.index("$(STAMP): pyproject.toml") :].split("\n\n")[0]
    assert "ci/install-test-tools.sh" in install


def test_script_passes_shellcheck() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install -y shellcheck)")
    result = subprocess.run([exe, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_as_root_on_debian_both_tools_are_there_after_it() -> None:
    """Where the script can install (root, apt-get), the browser and shellcheck tests
    run: they skip only where nothing can install them."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("installing needs root and apt-get")
    done = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert shutil.which("shellcheck"), done.stderr
    assert shutil.which("chromium") or shutil.which("chromium-browser"), done.stderr


def test_without_root_it_only_says_what_is_missing(tmp_path: Path) -> None:
    """Not root, or no apt-get: a note, exit 0, nothing installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id", "sh"):
        real = shutil.which(tool)
        assert real is not None
        (bin_dir / tool).symlink_to(real)
    fake_id = bin_dir / "id"
    fake_id.unlink()
    fake_id.write_text("#!/bin/sh\necho 1000\n")
    fake_id.chmod(0o755)
    done = subprocess.run(
        ["sh", str(SCRIPT)],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        timeout=60,
    )
    assert done.returncode == 0
    assert "note: not installed: chromium shellcheck" in done.stderr
