"""Debian's Chromium, headless, driven over the DevTools protocol (a websocket; no WebDriver needed).

``Browser().visit(url)`` loads a page and reports what a reader's browser saw: uncaught exceptions and console
errors, requests that failed, and every URL requested.
"""

import contextlib
import json
import os
import re
import signal
import shutil
import subprocess
import tempfile
import time

import requests
import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise FileNotFoundError("headless Chromium is needed; `.ci/setup` installs Debian's chromium")


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager."""

    def __enter__(self):
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True)
        self._process = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={self._profile.name}",
                                          "about:blank"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         text=True, start_new_session=True)
        for line in self._process.stderr:
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.port = int(match.group(1))
                break
        else:
            raise RuntimeError("Chromium did not open its DevTools port")
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)  # Chromium's helper processes too
        self._process.wait()
        self._profile.cleanup()

    def visit(self, url, settle=2.0, timeout=60.0):
        """{"errors": [...], "failed": [...], "requested": [...]} for one page load."""
        target = requests.put(f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=10).json()
        socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout)
        seen = {"errors": [], "failed": [], "requested": []}
        try:
            for number, method in enumerate(["Runtime.enable", "Log.enable", "Network.enable", "Page.enable"]):
                socket.send(json.dumps({"id": number + 1, "method": method}))
            socket.send(json.dumps({"id": 100, "method": "Page.navigate", "params": {"url": url}}))
            deadline, loaded = time.monotonic() + timeout, None
            while time.monotonic() < deadline and (loaded is None or time.monotonic() < loaded + settle):
                socket.settimeout(max(0.1, min(deadline, (loaded or deadline) + settle) - time.monotonic()))
                try:
                    message = json.loads(socket.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                self._record(message, seen)
                if message.get("method") == "Page.loadEventFired":
                    loaded = time.monotonic()
        finally:
            socket.close()
            requests.get(f"http://127.0.0.1:{self.port}/json/close/{target['id']}", timeout=10)
        return seen

    @staticmethod
    def _record(message, seen):
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            seen["errors"].append(details.get("exception", {}).get("description") or details.get("text"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            seen["errors"].append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            seen["errors"].append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
        elif method == "Network.loadingFailed":
            seen["failed"].append(f"{params.get('errorText')} ({params.get('type')})")
        elif method == "Network.requestWillBeSent":
            seen["requested"].append(params["request"]["url"])
