"""Headless Chromium driven over the DevTools protocol, for tests of what a person sees in the Prefect UI: open a page,
wait until a condition holds in it, click, read, save a PNG. One browser serves every page of a test."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Self

from websockets.sync.client import connect

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu")  # these work as root in a container
VIEWPORT = {"width": 1400, "height": 2000}  # the screenshots' size


class Browser:
    """One headless Chromium with one page; `with Browser(binary) as b: b.open(url)`."""

    def __init__(self, binary: str, timeout: float = 60):
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="llmft-chromium-"))
        self.process = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # its own group: close() stops the renderers too, whatever binary wraps it
        self._ids = itertools.count(1)
        try:
            port = self._wait(self._devtools_port, "DevTools port")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=30) as answer:
                page = next(t for t in json.load(answer) if t["type"] == "page")
            self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            self.send("Emulation.setDeviceMetricsOverride", **VIEWPORT, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "socket", None):
            self.socket.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=30)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, **params) -> dict:
        """A DevTools command's result; events that arrive meanwhile are skipped."""
        command_id = next(self._ids)
        self.socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while (message := json.loads(self.socket.recv(timeout=self.timeout))).get("id") != command_id:
            pass
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message["result"]

    def js(self, expression: str):
        """The expression's value in the page (JSON-able values only)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']['text']}")
        return result["result"].get("value")

    def open(self, url: str, ready: str):
        """Load url and wait until the JavaScript expression `ready` is truthy (the single-page app renders late)."""
        self.send("Page.navigate", url=url)
        return self.wait(ready)

    def wait(self, ready: str):
        return self._wait(lambda: self.js(ready), f"{ready} in {self.js('location.href')}")

    def screenshot(self, path: Path, quiet: float = 0.5, at_most: float = 10) -> Path:
        """A PNG of the page once its DOM has not changed for `quiet` seconds (panels that load late), or after
        `at_most` seconds: the picture is for people, the test's assertions are on the DOM."""
        self.js("document.fonts.ready.then(() => true)")  # text drawn in the page's fonts, not a fallback
        last, since, deadline = None, time.monotonic(), time.monotonic() + at_most
        while time.monotonic() - since < quiet and time.monotonic() < deadline:
            if (now := self.js("document.body.innerHTML")) != last:
                last, since = now, time.monotonic()
            time.sleep(0.2)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def _devtools_port(self) -> str | None:
        # --remote-debugging-port=0 picks a free port and writes it as the first line of this file.
        if self.process.poll() is not None:
            raise RuntimeError(f"chromium exited with code {self.process.returncode} before it listened")
        written = self.profile / "DevToolsActivePort"
        return written.exists() and written.read_text().split("\n")[0]

    def _wait(self, check, what: str):
        deadline = time.monotonic() + self.timeout
        while not (found := check()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {self.timeout} s")
            time.sleep(0.2)
        return found
