"""sleepyllama history: how long the box slept, what woke it, and what that saved.

Read from the ledgers on this host (ledger.py): the GPU box's suspends and resumes (with the
idle verdict that asked for them) and its servers' load times; the always-on host's wakes with
their first client and request. Days are drawn as strips of half-hours. Energy saved is hours
asleep x (awake-idle watts - asleep watts): awake-idle watts are the GPUs' power.draw averaged
over idle checks, plus [energy] base_watts for the rest of the machine when it is set.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sleepyllama import ledger, sleep_actions
from sleepyllama.config import EnergyConfig
from sleepyllama.words import format_duration

HALF_HOUR = 1800
REASON_WINDOW = 300.0  # a "sleep" entry this close before a suspend asked for it
# the GPU box's: sleeps, suspends and resumes (root's services), and its servers' READY (the
# servers' own user writes a StateDirectory= of its own)
HOST_LEDGERS = (Path("/var/lib/sleepyllama/ledger.jsonl"),
                Path("/var/lib/sleepyllama/servers/ledger.jsonl"))
PROXY_STATE = Path("/var/lib/sleepyllama-proxy")  # the proxy unit's StateDirectory=
STRIP = {"awake": "█", "asleep": "·", "woken": "↑"}
PLAIN = {"awake": "#", "asleep": ".", "woken": "^"}


@dataclass
class Sleep:
    start: float
    end: float | None  # None: asleep still, as far as the ledger knows
    reason: str
    kind: str = "suspend"  # systemd-sleep's word, or "poweroff" (sleep_actions.py)
    # what it saved each hour, as the box told its proxy; None: work it out from awake_watts
    saving_watts: float | None = None


@dataclass
class Wake:
    at: float
    what: str  # "resumed; llama ready after 8.3s" or "192.168.1.20:5123 POST /v1/chat/..."
    woke: bool = True  # False: a proxy's wake that gave up (or was abandoned): no wake at all


def sleeps(entries: Sequence[ledger.Entry]) -> list[Sleep]:
    """Suspend-resume pairs. A suspend with no resume before entries of another boot ended when
    that boot began (the box was switched off, or crashed asleep)."""
    found: list[Sleep] = []
    asked: tuple[float, str] | None = None
    current: tuple[Sleep, str] | None = None  # and its boot
    for entry in entries:
        at = entry.at
        if current and entry.boot != current[1]:
            current[0].end = at
            found.append(current[0])
            current = None
        if isinstance(entry, ledger.Sleep):
            asked = (at, entry.reason)
        elif isinstance(entry, ledger.Suspend) and current is None:
            reason = asked[1] if asked and at - asked[0] <= REASON_WINDOW else (
                "suspended by something else (a lid, systemctl suspend)")
            current, asked = (Sleep(at, None, reason, entry.kind or "suspend"), entry.boot), None
        elif isinstance(entry, ledger.Resume) and current is not None:
            current[0].end = at
            found.append(current[0])
            current = None
    if current:
        found.append(current[0])
    return found


def shown_request(entry: ledger.Wake) -> str:
    """The request that woke the box, without a query string: a ledger written before queries
    were left out may hold one, and a query may carry a key (?api_key=...)."""
    return (entry.request or "(not HTTP)").split("?", 1)[0]


def shown_cause(entry: ledger.Wake) -> str:
    """Who woke the box, and with what: "192.168.1.20:51234 POST /v1/chat/completions (curl)",
    or for a learned pre-wake the habit it was for ("learned pre-wake for weekdays about
    08:25"). Never with ": " in it: the outcome follows that."""
    if entry.cause:
        return "learned pre-wake for " + entry.cause.removeprefix("learned: ").replace(": ", " ")
    agent = f" ({entry.agent})" if entry.agent else ""
    return f"{entry.first or '?'} {shown_request(entry)}{agent}"


def gpu_words(entry: ledger.Entry) -> str:
    """What the GPU check (host/gpu_check.py) or a server (host/placement.py) recorded after a
    resume, in a few words; "" for any other entry."""
    if isinstance(entry, ledger.GpuHealed):
        return "CUDA healed by reloading nvidia_uvm"
    if isinstance(entry, ledger.GpuFailed):
        return f"GPU unusable ({(entry.error or '?')[:120]})"
    if isinstance(entry, ledger.GpuReboot):
        return "rebooted for the GPU"
    if isinstance(entry, ledger.ServerDegraded):
        return f"{entry.name[:64]} {entry.problem[:120]}"
    return ""


def what_followed(index: int, entries: Sequence[ledger.Entry]) -> list[ledger.Entry]:
    """What the box recorded after the resume at entries[index], as part of that wake: until
    its next sleep, suspend or resume, and within HALF_HOUR (a GPU failure an hour on is
    another story). The entries are in the order they happened."""
    start = entries[index].at
    followed = []
    for entry in entries[index + 1:]:
        if (isinstance(entry, ledger.Sleep | ledger.Suspend | ledger.Resume)
                or entry.at - start >= HALF_HOUR):
            break
        followed.append(entry)
    return followed


def wakes(entries: Sequence[ledger.Entry]) -> list[Wake]:
    """The GPU box's resumes (with its servers' load times) and the proxies' wakes (with the
    client and request that caused them)."""
    found: list[Wake] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, ledger.Resume):
            after = what_followed(index, entries)
            gpu = [said for later in after if (said := gpu_words(later))]
            first_ready = {later.name: later for later in reversed(after)
                           if isinstance(later, ledger.ServerReady)}  # each server's first
            ready = [f"{name} ready after {later.load_seconds}s"
                     for name, later in sorted(first_ready.items(), key=lambda item: item[1].at)]
            how = "resumed" if sleep_actions.get(entry.kind).resumes else "booted"
            found.append(Wake(entry.at, "; ".join([how, *gpu[:2], *ready])))
        elif isinstance(entry, ledger.Wake):
            woke = entry.ready_after is not None
            ended = entry.abandoned_after if entry.gave_up_after is None else entry.gave_up_after
            outcome = (f"ready after {entry.ready_after}s" if woke else f"gave up after {ended}s")
            if entry.up_after is not None and woke:
                outcome += f" (the box up after {entry.up_after}s, then the model)"
            found.append(Wake(entry.at, f"{shown_cause(entry)}: {outcome}, "
                              f"{entry.signals} wake signals", woke))
    return sorted(found, key=lambda wake: wake.at)


def typical_wake(entries: Sequence[ledger.Entry], last: int = 10) -> tuple[float, int] | None:
    """(median seconds from the first wake signal to ready, how many wakes) over the proxies'
    last `last` wakes that succeeded; None before the first."""
    times = [entry.ready_after for entry in entries
             if isinstance(entry, ledger.Wake) and entry.ready_after is not None][-last:]
    return (statistics.median(times), len(times)) if times else None


def typical_first_answer(entries: Sequence[ledger.Entry], last: int = 10) -> float | None:
    """Median seconds from ready to the backend's first bytes to the wake's first client (the
    request's own work: a prompt read, a model swapped in) over the last `last` wakes."""
    times = [entry.after_ready for entry in entries
             if isinstance(entry, ledger.FirstAnswer) and entry.after_ready is not None][-last:]
    return statistics.median(times) if times else None


def wake_cost(typical: Sequence[float], first_answer: float | None) -> str:
    """"wakes take 14s (the median of the last 3 wakes), the first answer 2.1 s after that"."""
    median, wakes = typical
    line = f"wakes take {format_duration(round(median))} " + (
        f"(the median of the last {wakes} wakes)" if wakes > 1 else "(one wake so far)")
    if first_answer is not None:
        line += f", the first answer {first_answer:.1f} s after that"
    return line


def asleep_seconds(found: Sequence[Sleep], start: float, end: float, now: float) -> float:
    return sum(max(0.0, min(sleep.end or now, end) - max(sleep.start, start)) for sleep in found)


def kwh_saved(found: Sequence[Sleep], start: float, end: float, now: float,
              awake_watts: float | None, energy: EnergyConfig) -> float:
    """What the sleeps between start and end saved against the box awake and idle: a suspended
    box still draws asleep_watts, a hibernated or powered-off one off_watts. A sleep the box
    told its proxy of carries its own saving; one that does not counts only with awake_watts."""
    def watts(sleep: Sleep) -> float:
        if sleep.saving_watts is not None:
            return sleep.saving_watts
        if awake_watts is None:
            return 0.0
        return max(0.0, awake_watts - asleep_watts(sleep.kind, energy))

    return sum(max(0.0, min(sleep.end or now, end) - max(sleep.start, start)) / 3600
               * watts(sleep) / 1000 for sleep in found)


def kwh_known(found: Sequence[Sleep], awake_watts: float | None) -> bool:
    return awake_watts is not None or any(sleep.saving_watts is not None for sleep in found)


def asleep_watts(kind: str, energy: EnergyConfig) -> float:
    return energy.off_watts if sleep_actions.get(kind).powered_off else energy.asleep_watts


def saving_watts(energy: EnergyConfig, idle_watts: dict | None, kind: str) -> int | None:
    """What a sleep of this kind saves each hour, in watts; None while the box's draw is not
    known. The box tells its proxies (hints.py), whose page counts the kWh."""
    awake, _how = power(energy, idle_watts)
    return None if awake is None else round(max(0.0, awake - asleep_watts(kind, energy)))


@dataclass
class Day:
    date: str  # "Mon 11-23"
    cells: list[str]  # 48 half-hours: awake, asleep, woken
    asleep_hours: float
    wakes: int
    kwh_saved: float | None


def day_start(moment: float) -> float:
    local = time.localtime(moment)
    return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))


def days(found: Sequence[Sleep], woken: Sequence[Wake], count: int, now: float,
         awake_watts: float | None, known_from: float | None,
         energy: EnergyConfig | None = None) -> list[Day]:
    """Day by day; half-hours before the first record (or in the future) are left blank."""
    result = []
    today = day_start(now)
    for back in range(count - 1, -1, -1):
        start = day_start(today - back * 86400 + 3600)  # DST-safe: an hour into the day
        end = day_start(start + 90000)
        cells = []
        for cell in range(48):
            cell_start = start + cell * HALF_HOUR
            if cell_start >= now or known_from is None or cell_start + HALF_HOUR <= known_from:
                cells.append("")
                continue
            cell_end = min(cell_start + HALF_HOUR, now)
            if any(cell_start <= wake.at < cell_end for wake in woken if wake.woke):
                cells.append("woken")
            elif asleep_seconds(found, cell_start, cell_end, now) * 2 >= cell_end - cell_start:
                cells.append("asleep")
            else:
                cells.append("awake")
        hours = asleep_seconds(found, start, end, now) / 3600
        result.append(Day(time.strftime("%a %m-%d", time.localtime(start)), cells, hours,
                          sum(start <= wake.at < end for wake in woken if wake.woke),
                          None if not kwh_known(found, awake_watts) else kwh_saved(
                              found, start, end, now, awake_watts, energy or EnergyConfig())))
    return result


def power(energy: EnergyConfig, idle_watts: dict | None,
          gpu_box: bool = True) -> tuple[float | None, str]:
    """(watts the box draws awake and idle, how that figure is made): each sleep saves that
    less what it draws asleep (asleep_watts). On the always-on host (no [server.*]) there is
    nothing to measure: the figure is the GPU box's."""
    gpus = float(idle_watts["watts"]) if idle_watts else None
    if gpus is None and energy.base_watts is None and not gpu_box:
        return None, "the energy saved is measured on the GPU box: sleepyllama history there"
    if gpus is None and energy.base_watts is None:
        return None, ("no power figure yet: the GPUs' power.draw is averaged over idle checks "
                      "(nvidia-smi), and [energy] base_watts adds the rest of the machine")
    awake = (gpus or 0.0) + (energy.base_watts or 0.0)
    parts = []
    if gpus is not None:
        parts.append(f"GPUs {gpus:.0f} W measured over {idle_watts['samples']} idle checks")
    if energy.base_watts is not None:
        parts.append(f"base_watts {energy.base_watts:.0f} W")
    else:
        parts.append("GPUs only: set [energy] base_watts for the rest of the machine")
    return awake, (f"awake and idle {awake:.0f} W ({'; '.join(parts)}), suspended "
                   f"{energy.asleep_watts:g} W, hibernated or off {energy.off_watts:g} W")


def read_ledgers(hosts: Sequence[Path] = HOST_LEDGERS, proxies: Path | None = PROXY_STATE,
                 unreadable: list[str] | None = None) -> list[ledger.Entry]:
    """Every entry of this host's ledgers (proxies: None for the GPU box's alone). What a
    non-root user may not read (the proxy's DynamicUser directory is private) is left out and
    named in `unreadable`."""
    entries: list[ledger.Entry] = []
    paths = list(hosts)
    try:
        if proxies is not None and proxies.is_dir():
            paths += sorted(proxies.glob("*.ledger.jsonl"))
    except PermissionError:
        (unreadable if unreadable is not None else []).append(str(proxies))
    for path in paths:
        try:
            entries += ledger.read(path)
        except PermissionError:
            (unreadable if unreadable is not None else []).append(str(path))
    return sorted(entries, key=lambda entry: entry.at)


def report(entries: Sequence[ledger.Entry], energy: EnergyConfig, idle_watts: dict | None,
           count: int, now: float, gpu_box: bool = True, unreadable: Sequence[str] = ()) -> dict:
    """unreadable: ledgers this user may not read (a proxy's are root's): the wakes they hold
    are not known, and are said to be, rather than counted as none."""
    found, woken = sleeps(entries), wakes(entries)
    awake_watts, how = power(energy, idle_watts, gpu_box)
    known_from = entries[0].at if entries else None
    shown = days(found, woken, count, now, awake_watts, known_from, energy)
    kwh = None if awake_watts is None else sum(day.kwh_saved or 0.0 for day in shown)
    return {"days": [asdict(day) for day in shown],
            "asleep_hours": sum(day.asleep_hours for day in shown),
            "wakes": sum(day.wakes for day in shown), "kwh_saved": kwh,
            "money_saved": (None if kwh is None or energy.price_per_kwh is None
                            else kwh * energy.price_per_kwh),
            "currency": energy.currency, "power": how,
            "wakes_unknown": any("proxy" in path for path in unreadable),
            "recent_wakes": [asdict(wake) for wake in woken if wake.at >= now - count * 86400][-10:],
            "typical_wake": typical_wake(entries),
            "typical_first_answer": typical_first_answer(entries),
            "sleeps": [asdict(sleep) for sleep in found if (sleep.end or now) >= now - count * 86400]}


def strip(cells: Sequence[str], pictures: bool) -> str:
    symbols = STRIP if pictures else PLAIN
    return "".join(symbols.get(cell, " ") for cell in cells)


def render(data: dict, pictures: bool) -> str:
    symbols = STRIP if pictures else PLAIN
    count = len(data["days"])
    lines = [f"last {count} day(s), each mark half an hour: {symbols['awake']} awake, "
             f"{symbols['asleep']} asleep, {symbols['woken']} woken, blank: no record"]
    unknown = data.get("wakes_unknown")  # the proxies' ledgers are root's: needs root
    for day in data["days"]:
        kwh = "" if day["kwh_saved"] is None else f"  {day['kwh_saved']:.2f} kWh saved"
        wakes = "wakes: needs root" if unknown else f"{day['wakes']} wake(s)"
        lines.append(f"{day['date']}  {strip(day['cells'], pictures)}  asleep "
                     f"{day['asleep_hours']:4.1f} h  {wakes}{kwh}")
    total = (f"total: asleep {data['asleep_hours']:.1f} h of {count * 24} h, "
             + ("wakes: needs root (sudo sleepyllama history)" if unknown
                else f"{data['wakes']} wake(s)"))
    if data["kwh_saved"] is not None:
        total += f", {data['kwh_saved']:.2f} kWh saved"
        if data["money_saved"] is not None:
            total += f" ({data['money_saved']:.2f} {data['currency']})".replace(" )", ")")
    lines += [total, data["power"]]
    if data.get("typical_wake"):
        lines.append(wake_cost(data["typical_wake"], data.get("typical_first_answer")))
    if data["recent_wakes"]:
        lines.append("recent wakes:")
        lines += [f"  {time.strftime('%a %H:%M', time.localtime(wake['at']))}  {wake['what']}"
                  for wake in data["recent_wakes"]]
    asleep_now = [s for s in data["sleeps"] if s["end"] is None]
    if asleep_now:
        lines.append(f"asleep since {time.strftime('%a %H:%M', time.localtime(asleep_now[-1]['start']))}")
    return "\n".join(lines)


def last_day_line(data: dict, pictures: bool) -> str:
    """For sleepyllama status: the last 24 h as one strip, and the totals."""
    cells = [cell for day in data["days"] for cell in day["cells"] if cell][-48:]
    wakes = "wakes: needs root" if data.get("wakes_unknown") else f"{data['wakes']} wake(s)"
    return (f"last 24 h: {strip(cells, pictures)}  (week: asleep {data['asleep_hours']:.1f} h, "
            f"{wakes}" + ("" if data["kwh_saved"] is None else
                                           f", {data['kwh_saved']:.2f} kWh saved") + ")")

