"""`integration-worker new`: what it refuses, and how it edits the registry (no service needed;
the scaffolded integration's own test runs in tests/tools/test_scaffold.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.test_scaffold import copy_project, run
from worker.cli.scaffold import ScaffoldError, add_to_registry, scaffold


def test_new_refuses_a_taken_or_unusable_name(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    before = (project / "integrations" / "registry.py").read_text()

    for name, reason in (
        ("github", "already exists"),
        ("Acme", "not a usable type"),
        ("acme_notes", "not a usable type"),
        ("integration", "not a usable type"),
        ("class", "Python keyword"),
    ):
        with pytest.raises(ScaffoldError, match=reason):
            scaffold(project, name)

    assert (project / "integrations" / "registry.py").read_text() == before
    refused = run(project, "-m", "worker.cli", "new", "github")
    assert refused.returncode == 2 and "already exists" in refused.stderr


def test_the_registry_line_keeps_the_list_sorted_and_wraps_a_long_import() -> None:
    source = (
        '"""Every integration."""\n\n'
        "from integrations import github, gmail, google_calendar, mattermost, slack, smtp, task_comments, whatsapp\n"
        "from worker.sdk import Registry\n\n"
        "REGISTRY = Registry(\n    [\n        github.integration,\n        gmail.integration,\n"
        "        whatsapp.integration,\n    ]\n)\n"
    )

    result = add_to_registry(source, "acme_notes")
    longer = add_to_registry(result, "zendesk_tickets")

    assert result == (
        '"""Every integration."""\n\n'
        "from integrations import acme_notes, github, gmail, google_calendar, mattermost, slack, smtp, task_comments, "
        "whatsapp\n"
        "from worker.sdk import Registry\n\n"
        "REGISTRY = Registry(\n    [\n        acme_notes.integration,\n        github.integration,\n"
        "        gmail.integration,\n        whatsapp.integration,\n    ]\n)\n"
    )
    assert longer.startswith(
        '"""Every integration."""\n\n'
        "from integrations import (\n    acme_notes,\n    github,\n    gmail,\n    google_calendar,\n    mattermost,\n"
        "    slack,\n    smtp,\n    task_comments,\n    whatsapp,\n    zendesk_tickets,\n)\n"
    )
    assert longer.endswith("        whatsapp.integration,\n        zendesk_tickets.integration,\n    ]\n)\n")
    compile(longer, "registry.py", "exec")
    assert add_to_registry(longer, "extra").count("from integrations import (") == 1  # a wrapped import grows too
