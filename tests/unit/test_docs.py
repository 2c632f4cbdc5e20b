"""The docs stay true: the configuration page is what the settings models say, and no page
points at files users do not have."""

from __future__ import annotations

import re
from pathlib import Path

from integrations.registry import REGISTRY
from worker.cli.settings_doc import keys_markdown, settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def markdown_pages() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return pages + sorted(ROOT.glob("integrations/*/README.md"))


def test_the_configuration_page_is_generated_from_the_settings() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == settings_markdown(REGISTRY), "run: integration-worker config --markdown > docs/configuration.md"


def test_every_setting_has_a_description() -> None:
    undescribed = [line for line in settings_markdown(REGISTRY).splitlines() if line.endswith("|  |")]
    assert undescribed == []


def test_relative_links_lead_to_files_that_exist() -> None:
    broken = []
    for page in markdown_pages():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_no_page_points_outside_the_project() -> None:
    outside = [
        str(page.relative_to(ROOT))
        for page in markdown_pages()
        if "../shared" in page.read_text() or "shared/bench" in page.read_text()
    ]
    assert outside == []


def test_the_contracts_table_of_keys_is_generated_from_the_registry() -> None:
    page = (ROOT / "docs" / "contract.md").read_text()
    table = page.split("<!-- keys:start -->\n", 1)[1].split("<!-- keys:end -->", 1)[0]
    assert table == keys_markdown(REGISTRY), "run: integration-worker integrations --keys, into docs/contract.md"
