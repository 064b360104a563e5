"""What a user sees in Open WebUI while the GPU box wakes: a real Open WebUI (PyPI open-webui)
in Debian's chromium, talking to the sleepyllama proxy in front of a backend that sleeps until
a magic packet reaches it (the tests' fake llama-server and wake listener, on loopback).

Too heavy for CI (open-webui brings several GB of ML packages): tools/openwebui-screenshot.sh
makes its environment and runs this. The pictures land in docs/ (README shows them).

    tools/openwebui-screenshot.sh            # or, with that environment made:
    OWUI/bin/python tools/openwebui_screenshot.py --python .venv/bin/python --open-webui OWUI/bin/open-webui
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAC = "ab:cd:ef:01:23:45"
LOAD_SECONDS = 8  # resume, link, model load: short, but long enough to watch
# the fake server's answer (it has no model): what the picture shows after the wake
REPLY = ("Sunlight scatters off the air's molecules, and blue light, with its shorter "
         "wavelength, scatters the most (Rayleigh scattering).")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"gave up waiting for {what} after {timeout:.0f} s")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status == 200
    except OSError:
        return False


class Processes:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="a Python with sleepyllama's dependencies (the tests' .venv)")
    parser.add_argument("--open-webui", required=True, help="the open-webui program")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default=str(REPO / "docs"), help="where the PNGs go")
    parser.add_argument("--ollama", action="store_true",
                        help="Open WebUI's Ollama connection to a fake Ollama (tests/fake_servers.py)"
                        " instead of its OpenAI connection to a fake llama-server")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    directory = Path(tempfile.mkdtemp(prefix="sleepyllama-openwebui-"))
    processes = Processes(directory)
    backend_port, proxy_port, webui_port = free_port(), free_port(), free_port()
    wol_port = free_port(socket.SOCK_DGRAM)
    if args.ollama:  # answers "hi there" as soon as it runs: the wake is the box's only
        server = [args.python, str(REPO / "tests" / "fake_servers.py"), "--kind", "ollama",
                  "--port", str(backend_port)]
        kind, look, model, answer, prefix = ("ollama", "/api/tags", "llama3.2:latest",
                                             "hi there", "openwebui-ollama")
    else:
        server = [args.python, str(REPO / "tests" / "fake_llama_server.py"), "--port",
                  str(backend_port), "--load-seconds", str(LOAD_SECONDS), "--reply", REPLY,
                  "--token-delay", "0.08", "--metrics"]
        kind, look, model, answer, prefix = ("llama-server", "/v1/models", "tiny",
                                             "(Rayleigh scattering).", "openwebui")
    state = directory / "state"
    state.mkdir()
    (directory / "sleepyllama.toml").write_text(
        f'[proxy.llama]\nbackend = "127.0.0.1:{backend_port}"\nmac = "{MAC}"\n'
        f'broadcast = "127.255.255.255"\nwol_port = {wol_port}\nwol_interval = "2s"\n'
        f'kind = "{kind}"\nwake_progress = true\n')
    try:
        # the GPU box: its "network card" starts the server when a magic packet arrives
        processes.start("box", [args.python, str(REPO / "tests" / "wol_listener.py"), "--port",
                                str(wol_port), "--mac", MAC, "--", *server])
        processes.start("proxy", [args.python, "-m", "sleepyllama.proxy", "--config",
                                  str(directory / "sleepyllama.toml"), "--listen",
                                  f"127.0.0.1:{proxy_port}", "-v"],
                        env={"STATE_DIRECTORY": str(state), "PYTHONPATH": str(REPO)})
        proxy = f"http://127.0.0.1:{proxy_port}"
        # one wake fills the proxy's cache with the model list; then the box "suspends"
        wait_for(lambda: answers(f"{proxy}{look}"), "the first wake", 60)
        # anchored: the wake listener's own command line holds the server's too
        subprocess.run(["pkill", "-f", f"^{' '.join(server[:4])} "], check=True)
        wait_for(lambda: not answers(f"http://127.0.0.1:{backend_port}{look}"), "the box to sleep", 10)

        data = directory / "open-webui"
        data.mkdir()
        processes.start("open-webui", [args.open_webui, "serve", "--host", "127.0.0.1", "--port",
                                       str(webui_port)], env={
            "DATA_DIR": str(data), "WEBUI_AUTH": "False",
            **({"ENABLE_OPENAI_API": "False", "OLLAMA_BASE_URL": proxy} if args.ollama else
               {"ENABLE_OLLAMA_API": "False", "OPENAI_API_BASE_URL": f"{proxy}/v1",
                "OPENAI_API_KEY": "none"}),
            "DEFAULT_MODELS": model, "WEBUI_SECRET_KEY": "screenshot",
            "HF_HUB_OFFLINE": "1", "OFFLINE_MODE": "true", "ENABLE_VERSION_UPDATE_CHECK": "False",
            "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False", "ANONYMIZED_TELEMETRY": "False",
            "ENABLE_TITLE_GENERATION": "False", "ENABLE_FOLLOW_UP_GENERATION": "False",
            "ENABLE_TAGS_GENERATION": "False", "ENABLE_AUTOCOMPLETE_GENERATION": "False"})
        webui = f"http://127.0.0.1:{webui_port}"
        wait_for(lambda: answers(f"{webui}/health"), "Open WebUI", 300)

        out = Path(args.out)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium,
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 540})
            page.goto(webui)
            page.wait_for_selector("#chat-input", timeout=120_000)
            page.keyboard.press("Escape")  # a "what's new" dialog, if any
            page.locator("#chat-input").click()
            page.keyboard.type("Why is the sky blue?")
            page.keyboard.press("Enter")
            if not args.ollama:  # the fake Ollama is up as soon as it runs: no time to look
                page.get_by_text("Thinking").first.wait_for(timeout=60_000)
                page.wait_for_timeout(LOAD_SECONDS * 1000 / 2)
                page.get_by_text("Thinking").first.click()  # the thinking block, opened
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / f"{prefix}-waking.png"))
            page.get_by_text(answer).wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
            if not page.get_by_text("ready after").first.is_visible():
                page.get_by_text("Thought for").first.click()  # Open WebUI closes it when done
                page.get_by_text("ready after").first.wait_for(timeout=10_000)
            page.screenshot(path=str(out / f"{prefix}-woken.png"))
            browser.close()
        print(json.dumps({"pictures": sorted(str(p) for p in out.glob(f"{prefix}-*.png")),
                          "logs": str(directory)}))
        return 0
    finally:
        processes.stop()


if __name__ == "__main__":
    sys.exit(main())
