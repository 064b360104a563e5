"""A real headless chromium, driven through the DevTools protocol over a pipe
(--remote-debugging-pipe: JSON messages ended by a NUL on fds 3 and 4), so a test can load a
page, press its buttons and read what a person would see, with no driver to install."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def chromium_program() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed (Debian's package chromium; ./run-tests installs it)")
    raise AssertionError  # not reached


class Chromium:
    def __init__(self, width: int = 420, height: int = 800, names: dict[str, str] | None = None
                 ) -> None:
        """names: host names this browser resolves to the given addresses, as a DNS name made
        to point at the page would."""
        self.profile = tempfile.mkdtemp(prefix="sleepyllama-chromium-")
        to_browser_read, self.to_browser = os.pipe()
        self.from_browser, from_browser_write = os.pipe()
        reading, writing = to_browser_read, from_browser_write

        def onto_3_and_4() -> None:  # in the child: first out of the way, then into place
            high_read = fcntl.fcntl(reading, fcntl.F_DUPFD, 100)
            high_write = fcntl.fcntl(writing, fcntl.F_DUPFD, 100)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        # fds 3 and 4 in the child, as --remote-debugging-pipe expects (kept: pass_fds)
        self.process = subprocess.Popen(
            [chromium_program(), "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "--no-first-run",
             f"--window-size={width},{height}",
             *([f"--host-resolver-rules={', '.join(f'MAP {n} {a}' for n, a in names.items())}"]
               if names else []),
             "about:blank"],
            pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=onto_3_and_4)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.next_id, self.buffer = 0, b""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method: str, session: bool = False, timeout: float = 30.0, **params: object
             ) -> dict:
        self.next_id += 1
        message: dict = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _receive(self, deadline: float) -> dict:
        import select

        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page as it is now; None while a new
        page is loading (the old one's context is gone)."""
        try:
            result = self.call("Runtime.evaluate", session=True, expression=expression,
                               returnByValue=True)
        except RuntimeError:
            return None
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, what: str = "") -> object:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or expression}: last {value!r}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for fd in (self.to_browser, self.from_browser):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)
