"""The docs a user reads: every setting in docs/configuration.md, and every link leads
somewhere (a file that exists, a heading that is there)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sleepyllama import config

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# the tables of the config and the record that holds each one's keys
TABLES = {"proxy.NAME": config.ProxyConfig, "server.NAME": config.ServerConfig,
          "idle": config.IdleConfig, "resume": config.ResumeConfig,
          "energy": config.EnergyConfig, "notify": config.NotifyConfig,
          "metrics": config.MetricsConfig, "mqtt": config.MqttConfig,
          "steer": config.SteerConfig, "web": config.WebConfig}


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    title = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return title.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize(("table", "record"), TABLES.items())
def test_every_setting_is_in_the_configuration_page(table: str, record: type) -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| ")]
    for field in dataclasses.fields(record):
        if field.name in ("name", "path"):
            continue  # the table's own name, not a key
        if table == "proxy.NAME":  # the proxy's table lists its keys alone
            found = any(f"`{field.name}`" in row for row in rows)
        else:
            found = any(f"[{table}]" in row and re.search(rf"\b{field.name}\b", row)
                        for row in rows)
        assert found, f"[{table}] {field.name} is not in docs/configuration.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_leads_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}: no such heading"


def test_every_module_is_in_the_design_s_table() -> None:
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    package = ROOT / "sleepyllama"
    missing = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py"))
               if path.name not in ("__init__.py", "__main__.py")
               and f"`{path.relative_to(package)}`" not in design and f"`{path.name}`" not in design]
    assert not missing, f"docs/DESIGN.md names no row for {missing}"
