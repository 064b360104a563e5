"""The docs a user reads: every setting in docs/configuration.md, and every link leads
somewhere (a file that exists, a heading that is there)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sleepyllama import config
from sleepyllama.words import format_duration

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# the tables of the config and the record that holds each one's keys
TABLES = {"proxy.NAME": config.ProxyConfig, "server.NAME": config.ServerConfig,
          "idle": config.IdleConfig, "resume": config.ResumeConfig,
          "energy": config.EnergyConfig, "notify": config.NotifyConfig,
          "metrics": config.MetricsConfig, "mqtt": config.MqttConfig,
          "steer": config.SteerConfig, "web": config.WebConfig, "schedule": config.ScheduleConfig}


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


def test_every_module_has_a_test_file_named_for_it() -> None:
    """sleepyllama/proxy/wake.py is tested in tests/proxy/test_wake.py: a reader finds a
    module's tests by its name (others may test it too, through the modules that use it)."""
    package = ROOT / "sleepyllama"
    missing = []
    for path in sorted(package.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        where = path.relative_to(package)
        test = ROOT / "tests" / where.parent / f"test_{where.name}"
        if not test.exists():
            missing.append(str(test.relative_to(ROOT)))
    assert not missing, f"no test file for {len(missing)} module(s): {missing}"


def documented_defaults() -> dict[tuple[str, str], str]:
    """(table, key) -> the default column's code literal, for rows of one key whose default is
    one literal (`"3s"`, `512`, `false`, `[]`)."""
    found = {}
    page = (ROOT / "docs" / "configuration.md").read_text()
    for row in page.splitlines():
        match = re.fullmatch(r"\| `(?:\[(?P<table>[a-z.A-Z]+)\] )?(?P<key>\w+)` \| `(?P<default>[^`]+)`"
                             r"(?: \([^|]*\))? \|.*", row)
        if match:
            found[(match["table"] or "proxy.NAME", match["key"])] = match["default"]
    return found


def as_toml(value: object) -> set[str]:
    """How the page may write a default: as TOML, a float also as a duration."""
    if isinstance(value, bool):
        return {"true" if value else "false"}
    if isinstance(value, str):
        return {f'"{value}"'}
    if isinstance(value, int):
        return {str(value)}
    if isinstance(value, float):
        return {f"{value:g}", f'"{format_duration(value)}"'}
    if value == ():
        return {"[]"}
    return {repr(value)}


def test_each_default_the_page_writes_is_the_code_s() -> None:
    """A default is written once, on its setting (config.setting): the page must say the same."""
    documented = documented_defaults()
    assert len(documented) > 20, "the page's tables were not read"
    checked = 0
    for table, record in TABLES.items():
        for setting in dataclasses.fields(record):
            said = documented.get((table, setting.name))
            if said is None or setting.default is dataclasses.MISSING:
                continue
            assert said in as_toml(setting.default), (
                f"[{table}] {setting.name}: the page says {said}, the code {setting.default!r}")
            checked += 1
    assert checked > 20


def test_every_key_is_read_through_its_setting() -> None:
    """Every field of a table's record but its name has a parser: no key is read apart."""
    for table, record in TABLES.items():
        for setting in dataclasses.fields(record):
            if setting.name not in ("name", "path"):
                assert setting.metadata.get("parse"), f"[{table}] {setting.name} has no setting"
