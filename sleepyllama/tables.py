"""Write one table of sleepyllama.toml without touching the rest (used by install.sh).

TOML has no writer in the standard library, and a user's file has comments and an order worth
keeping, so this edits text: the [kind.NAME] table (and [idle] timeout) is replaced or appended,
every other line stays byte for byte. The result is validated before it is written.

  python -m sleepyllama.tables FILE proxy NAME --backend H:P --mac M [--broadcast IP]
                                            [--kind KIND] [--api-key-file PATH] [--wake-progress]
                                            [--prewake learned|off]
                                            [--mqtt-broker HOST:PORT] [--mqtt-username USER]
                                            [--mqtt-ca-file FILE]
  python -m sleepyllama.tables FILE server NAME [--idle-timeout 1h] [--notify-proxy H:P] -- COMMAND...
Prints "unchanged" or "written".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama import files, sleep_actions
from sleepyllama.config import ConfigError

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def toml_string(value: str) -> str:
    return json.dumps(value)  # JSON's string escapes are TOML basic-string escapes


def toml_value(value: object) -> str | None:
    """A key's value as TOML, for the plain values a table of ours holds; None for others."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "[" + ", ".join(toml_string(item) for item in value) + "]"
    return None


def _data(text: str) -> dict:
    try:
        return configuration.tomllib.loads(text)
    except configuration.tomllib.TOMLDecodeError:
        return {}  # written anew; _write says what is wrong with the result


def old_table(text: str, kind: str, name: str | None = None) -> dict[str, object]:
    """The keys of [kind.name] (or [kind]) as the file has them now ({} when absent)."""
    table = _data(text).get(kind, {})
    if name is not None:
        table = table.get(name, {}) if isinstance(table, dict) else {}
    return table if isinstance(table, dict) else {}


def keep_the_rest(body: list[str], before: dict[str, object], dropped: set[str]) -> list[str]:
    """The new body, with every key of the table before that this run did not set (nor asked to
    drop): a re-run without --api-key-file must not forget the key."""
    given = {line.split("=", 1)[0].strip() for line in body}
    kept = []
    for key, value in before.items():
        text = toml_value(value)
        if key not in given and key not in dropped and text is not None:
            body = [*body, f"{key} = {text}"]
            kept.append(key)
    if kept:
        print(f"install.sh: kept from before: {', '.join(kept)} (not given this time; edit the "
              "file to change them)", file=sys.stderr)
    return body


def set_table(text: str, name: str, body: list[str]) -> str:
    """Replace the table `name` (its header through the line before the next header) or append."""
    lines = text.splitlines(keepends=True)
    start = end = None
    for index, line in enumerate(lines):
        match = _HEADER.match(line)
        if match and start is not None and end is None:
            end = index
        if match and match.group(1) == name:
            start, end = index, None
    block = [f"[{name}]\n", *(f"{line}\n" for line in body)]
    if start is None:
        separator = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + separator + "".join(block)
    end = len(lines) if end is None else end
    # blank lines and comments just above the next header belong to that table: keep them
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return "".join(lines[:start] + block + lines[end:])


def remove_table(text: str, name: str) -> str:
    """Remove the table `name` (its header through its last key), keeping every other byte."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines)
                  if (match := _HEADER.match(line)) and match.group(1) == name), None)
    if start is None:
        return text
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    # blank lines and comments just above the next header belong to that table: keep them
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    if end < len(lines) and not lines[end].strip():  # the blank line that separated ours goes
        end += 1
    return "".join(lines[:start] + lines[end:])


def set_key(text: str, table: str, key: str, value: str) -> str:
    """Set one key inside a table, keeping the table's other keys (creates the table if absent)."""
    lines = text.splitlines(keepends=True)
    inside, insert_at = False, None
    for index, line in enumerate(lines):
        match = _HEADER.match(line)
        if match:
            if inside:
                break
            inside = match.group(1) == table
            insert_at = index + 1 if inside else insert_at
            continue
        if inside and re.match(rf"\s*{re.escape(key)}\s*=", line):
            lines[index] = f"{key} = {value}\n"
            return "".join(lines)
        if inside and line.strip():
            insert_at = index + 1
    if insert_at is None:
        return set_table(text, table, [f"{key} = {value}"])
    lines.insert(insert_at, f"{key} = {value}\n")
    return "".join(lines)


def _table_text(text: str, table: str) -> str:
    """The lines of one table (after its header, before the next), or "" when it is absent."""
    lines, inside = [], False
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            inside = match.group(1) == table
        elif inside:
            lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sleepyllama.tables",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("kind", choices=["proxy", "server"])
    parser.add_argument("name")
    parser.add_argument("--backend")
    parser.add_argument("--mac")
    parser.add_argument("--broadcast")
    parser.add_argument("--kind", dest="backend_kind", help="the backend's kind (auto: any)")
    parser.add_argument("--api-key-file", help="the backend's API key, for the proxy's cache")
    parser.add_argument("--wake-progress", action="store_true",
                        help="show a wake's progress in streamed chats")
    parser.add_argument("--prewake", choices=["off", "learned"],
                        help="learned: pre-wakes learned from the ledger; off (the default) drops them")
    parser.add_argument("--idle-timeout")
    parser.add_argument("--notify-proxy", action="append", default=[],
                        help="set [notify] proxies: HOST:PORT of a proxy to tell (repeatable)")
    parser.add_argument("--gpu", help="set [idle] gpu")
    parser.add_argument("--action", choices=list(sleep_actions.ACTIONS),
                        help="set [idle] action: how the box sleeps")
    parser.add_argument("--mqtt-broker", help="set [mqtt] broker (Home Assistant's broker)")
    parser.add_argument("--mqtt-username", help="set [mqtt] username")
    parser.add_argument("--mqtt-ca-file", help="set [mqtt] ca_file and tls = true")
    parser.add_argument("--remove", action="store_true", help="remove the table instead")
    parser.add_argument("--gpu-if-unset", help="set [idle] gpu unless the file already sets it")
    argv = sys.argv[1:] if argv is None else argv
    # the server's command follows "--" verbatim: its own --flags are not ours to parse
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]

    old = args.file.read_text() if args.file.exists() else ""
    if args.remove:
        return _write(args.file, old, remove_table(old, f"{args.kind}.{args.name}"))
    before = old_table(old, args.kind, args.name)
    if args.kind == "proxy":
        body = [f"backend = {toml_string(args.backend)}", f"mac = {toml_string(args.mac)}"]
        if args.broadcast:
            body.append(f"broadcast = {toml_string(args.broadcast)}")
        if args.backend_kind and args.backend_kind != "auto":
            body.append(f"kind = {toml_string(args.backend_kind)}")
        if args.api_key_file:
            body.append(f"api_key_file = {toml_string(args.api_key_file)}")
        if args.wake_progress:
            body.append("wake_progress = true")
        if args.prewake == "learned":
            body.append('prewake = "learned"')
        # --kind auto and --prewake off are the defaults: each drops what was set before
        dropped = ({"kind"} if args.backend_kind == "auto" else set()) | (
            {"prewake"} if args.prewake == "off" else set())
        body = keep_the_rest(body, before, dropped)
    else:
        body = keep_the_rest(
            ["command = [" + ", ".join(toml_string(arg) for arg in args.command) + "]"], before,
            set())
    new = set_table(old, f"{args.kind}.{args.name}", body)
    if args.idle_timeout:
        new = set_key(new, "idle", "timeout", toml_string(args.idle_timeout))
    if args.action:
        new = set_key(new, "idle", "action", toml_string(args.action))
    if args.notify_proxy:
        # added to those told before: a second box's proxy must not stop getting hints
        told = old_table(old, "notify").get("proxies", [])
        told = told if isinstance(told, list) else []
        proxies = list(dict.fromkeys([*(p for p in told if isinstance(p, str)), *args.notify_proxy]))
        new = set_key(new, "notify", "proxies",
                      "[" + ", ".join(toml_string(p) for p in proxies) + "]")
    if args.mqtt_broker:
        new = set_key(new, "mqtt", "broker", toml_string(args.mqtt_broker))
    if args.mqtt_username:
        new = set_key(new, "mqtt", "username", toml_string(args.mqtt_username))
    if args.mqtt_ca_file:
        new = set_key(new, "mqtt", "tls", "true")
        new = set_key(new, "mqtt", "ca_file", toml_string(args.mqtt_ca_file))
    gpu_is_set = bool(re.search(r"^\s*gpu\s*=", _table_text(old, "idle"), re.MULTILINE))
    if args.gpu or (args.gpu_if_unset and not gpu_is_set):
        new = set_key(new, "idle", "gpu", toml_string(args.gpu or args.gpu_if_unset))
    return _write(args.file, old, new)


def _write(file: Path, old: str, new: str) -> int:
    try:
        configuration.parse(new, file)
    except ConfigError as error:
        print(f"install.sh: the config would not be valid: {error}", file=sys.stderr)
        return configuration.EX_CONFIG
    if new == old:
        print("unchanged")
        return 0
    files.write_atomic(file, new.encode(), 0o644)
    print("written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
