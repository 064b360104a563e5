#!/usr/bin/env python3
"""docs/clients.md's LiteLLM snippet, run as written against the real LiteLLM proxy (PyPI litellm[proxy]),
in front of sleepyllama-proxy and the tests' fake llama-server. Outside CI: LiteLLM and its
proxy extras are a large install.

  python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'
  .venv/bin/python tools/litellm_check.py --litellm /tmp/litellm/bin/litellm

Exit 0 when a chat through LiteLLM is answered by the backend behind the proxy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER = ROOT / "tests" / "fake_llama_server.py"
KEY_IN_SNIPPET = re.compile(r"master_key: (sk-\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readme_snippet() -> str:
    """The YAML block under docs/clients.md's "LiteLLM in front", as a user copies it."""
    text = (ROOT / "docs" / "clients.md").read_text()
    section = text.split("## LiteLLM in front", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--litellm", default="litellm", help="the litellm program (default: on PATH)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sleepyllama-litellm-"))
    backend, proxy_port, litellm_port = free_port(), free_port(), free_port()
    (work / "sleepyllama.toml").write_text(
        f'[proxy.llama]\nbackend = "127.0.0.1:{backend}"\nmac = "ab:cd:ef:01:23:45"\n'
        f'broadcast = "127.0.0.1"\nwol_port = {free_port()}\n')
    (work / "litellm.yaml").write_text(readme_snippet().replace("ALWAYS-ON-HOST:3939",
                                                                f"127.0.0.1:{proxy_port}"))
    processes = [
        subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port", str(backend)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "sleepyllama.proxy", "--config",
                          str(work / "sleepyllama.toml"), "--listen", f"127.0.0.1:{proxy_port}"],
                         stderr=(work / "proxy.log").open("wb"), cwd=ROOT),
        # the snippet as written: its own master key, none from the environment
        subprocess.Popen([args.litellm, "--config", str(work / "litellm.yaml"), "--port",
                          str(litellm_port)], stdout=(work / "litellm.log").open("wb"),
                         stderr=subprocess.STDOUT,
                         env={k: v for k, v in os.environ.items() if k != "LITELLM_MASTER_KEY"}),
    ]
    key = KEY_IN_SNIPPET.search(readme_snippet())
    assert key is not None, "the docs' snippet has no master_key: LiteLLM would not start"
    try:
        wait_for(f"http://127.0.0.1:{litellm_port}/health/liveliness", 180)
        request = urllib.request.Request(
            f"http://127.0.0.1:{litellm_port}/v1/chat/completions",
            data=json.dumps({"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {key.group(1)}"})
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as error:
            print(f"FAIL: LiteLLM answered {error.code}: {error.read()[:500]!r}\n"
                  f"(logs in {work})", file=sys.stderr)
            return 1
        content = body["choices"][0]["message"]["content"]
        print(f"ok: a chat through LiteLLM, the docs' snippet as written, answered {content!r}")
        return 0
    finally:
        for process in processes:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
