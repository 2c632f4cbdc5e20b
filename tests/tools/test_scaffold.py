"""`integration-worker new`: a new integration in one folder, registered, that passes its own tests.
The scaffold runs in a copy of the project, so this checkout is never changed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".venv*", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name in ("schemas", "worker", "integrations", "tests"):
        shutil.copytree(ROOT / name, project / name, ignore=IGNORE)
    shutil.copy(ROOT / "pyproject.toml", project)
    return project


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=project, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_scaffolded_integration_is_registered_and_passes_its_generated_test(tmp_path: Path) -> None:
    project = copy_project(tmp_path)

    made = run(project, "-m", "worker.cli", "new", "acme-notes", "--name", "Acme Notes")

    assert made.returncode == 0, made.stderr
    package = project / "integrations" / "acme_notes"
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "actions.py", "config.py", "handle.py"]
    assert (project / "tests" / "acme_notes" / "test_acme_notes.py").is_file()
    registry = (project / "integrations" / "registry.py").read_text()
    assert "acme_notes" in registry.split("from worker")[0]  # imported
    assert "        acme_notes.integration,\n" in registry
    assert not (ROOT / "integrations" / "acme_notes").exists()  # this checkout is untouched

    listed = run(project, "-m", "worker.cli", "integrations")
    assert listed.returncode == 0, listed.stderr
    assert "acme-notes" in listed.stdout and "actions: send_message" in listed.stdout

    for lint in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        checked = subprocess.run(
            [sys.executable, "-m", "ruff", *lint, "integrations/acme_notes", "tests/acme_notes"],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout

    tested = run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/acme_notes")
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
    assert "4 passed" in tested.stdout
