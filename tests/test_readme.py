"""README.md as a new user meets it: its two opening commands are the ones CI runs, and every
fenced Python block in it runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_opens_with_two_commands_and_ci_runs_the_second_verbatim():
    first = re.match(r"# rtpipe\n\n```bash\n(.*?)```", README, re.S)
    assert first, "README must open with its fenced commands"
    install, tests = first.group(1).strip().splitlines()
    assert install.endswith("rtpipe demo") and tests.endswith("python -m pytest -q")
    assert all("-c constraints.txt" in c and c.startswith("python3 -m venv .venv && . .venv/bin/activate") for c in (install, tests))
    assert any(line in (tests, tests + " || exit 1") for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines())


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_every_python_block_in_the_readme_runs_as_written(index, tmp_path):
    """Each block alone, in a fresh interpreter in an empty folder (what a reader pastes)."""
    r = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, f"README block {index}:\n{BLOCKS[index]}\n{r.stderr[-2000:]}"
