#!/usr/bin/env python3
"""What one idle check costs: `sleepyllama-idle --dry-run` with no signals to read (so that the
figure is the program's own, not nvidia-smi's), against the same interpreter doing nothing
(`-c pass`), interleaved run by run. The timer runs the check every 30 s on a box that exists
to save power.

Prints the median wall and CPU time of each (the CPU of the child, from getrusage), their ratio,
and the median import time of sleepyllama.host.idle_check (python -X importtime).

  bench/idle_check_cost.py [--runs 20]
  PYTHONPATH=/other/checkout bench/idle_check_cost.py     the same for another checkout
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NO_SIGNALS = """[server.llama]
command = ["/usr/bin/true", "--port", "8080"]
health_url = "http://127.0.0.1:8080/health"
[idle]
gpu = "off"
gpu_processes = false
servers = false
sessions = false
inhibitors = false
woken_by = "other"
[metrics]
textfile_dir = "off"
"""


def timed(argv: list[str], where: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=where)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_time(where: str) -> float:
    """Seconds to import sleepyllama.host.idle_check, as python -X importtime says."""
    found = subprocess.run([sys.executable, "-X", "importtime", "-c",
                            "import sleepyllama.host.idle_check"],
                           capture_output=True, text=True, check=True, cwd=where).stderr
    last = [line for line in found.splitlines() if line.endswith("| sleepyllama.host.idle_check")]
    return int(last[-1].split("|")[1]) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "sleepyllama.toml"
        config.write_text(NO_SIGNALS)
        check = [sys.executable, "-m", "sleepyllama.host.idle_check", "--config", str(config),
                 "--state-file", str(Path(directory) / "idle.json"), "--dry-run"]
        nothing = [sys.executable, "-c", "pass"]
        runs: dict[str, list[tuple[float, float]]] = {"check": [], "nothing": []}
        imports = []
        # run elsewhere than the checkout: "-c" puts the working directory first on sys.path,
        # which would shadow PYTHONPATH (how an older checkout is measured beside this one)
        for _ in range(args.runs):
            runs["check"].append(timed(check, directory))
            runs["nothing"].append(timed(nothing, directory))
            imports.append(import_time(directory))
    median = {name: (statistics.median(w for w, _ in found), statistics.median(c for _, c in found))
              for name, found in runs.items()}
    print(f"{args.runs} runs each, interleaved; medians")
    print(f"sleepyllama-idle --dry-run (no signals): wall {median['check'][0] * 1000:.0f} ms, "
          f"CPU {median['check'][1] * 1000:.0f} ms")
    print(f"python -c pass:                         wall {median['nothing'][0] * 1000:.0f} ms, "
          f"CPU {median['nothing'][1] * 1000:.0f} ms")
    print(f"ratio: wall {median['check'][0] / median['nothing'][0]:.1f}x, "
          f"CPU {median['check'][1] / median['nothing'][1]:.1f}x")
    print(f"import sleepyllama.host.idle_check: {statistics.median(imports) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
