"""Debian's Chromium, headless, driven over the DevTools protocol (a websocket; no WebDriver needed).

``Browser().visit(url)`` loads a page and reports what a reader's browser saw: uncaught exceptions and console
errors, requests that failed, and every URL requested. ``Browser().open(url)`` keeps the page open to evaluate
JavaScript in it, click and drag with the mouse, type and press keys, and take screenshots (the book's pages and a
JupyterLab session are driven the same way).
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


# DevTools' modifier bits, and the code and Windows key code of the named keys (letters are derived).
MODIFIERS = {"Alt": 1, "Control": 2, "Meta": 4, "Shift": 8}
KEYS = {"Enter": ("Enter", 13), "Escape": ("Escape", 27), "ArrowLeft": ("ArrowLeft", 37),
        "ArrowRight": ("ArrowRight", 39), "ArrowUp": ("ArrowUp", 38), "ArrowDown": ("ArrowDown", 40)}


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
        with self.open(url, settle, timeout) as page:
            return page.seen

    @contextlib.contextmanager
    def open(self, url, settle=2.0, timeout=60.0):
        """A loaded page (a Page: evaluate JavaScript in it, click, take a screenshot), closed on exit."""
        target = requests.put(f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=10).json()
        socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout)
        page = Page(socket)
        try:
            for method in ["Runtime.enable", "Log.enable", "Network.enable", "Page.enable"]:
                page.call(method)
            page.call("Network.setCacheDisabled", cacheDisabled=True)   # every page requests what it needs
            page.call("Page.navigate", url=url)
            page.wait(until="Page.loadEventFired", timeout=timeout)
            page.wait(settle)
            yield page
        finally:
            socket.close()
            requests.get(f"http://127.0.0.1:{self.port}/json/close/{target['id']}", timeout=10)


class Page:
    """One tab over DevTools; ``seen`` collects errors, failed and requested URLs while it is open."""

    def __init__(self, socket):
        self._socket, self._next_id = socket, 0
        self.seen = {"errors": [], "failed": [], "requested": []}

    def call(self, method, **params):
        """Send one DevTools command and return its result (recording every event that arrives meanwhile)."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = self._receive(None)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait(self, seconds=None, until=None, timeout=60.0):
        """Record events for ``seconds``, or until the event named ``until`` (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + (timeout if until else seconds)
        while time.monotonic() < deadline:
            message = self._receive(max(0.05, deadline - time.monotonic()))
            if until and message.get("method") == until:
                return

    def wait_for(self, expression, timeout=20.0):
        """Poll a JavaScript expression until it is truthy (its value), or ``timeout`` seconds (the last value)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            self.wait(0.1)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (promises awaited, values as JSON)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x, y):
        """A real mouse click (press, release) at page coordinates (CSS pixels)."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      buttons=1 if kind == "mousePressed" else 0, clickCount=1)

    def center(self, selector, text=None, number=0):
        """[x, y] in the viewport of the middle of the ``number``-th element ``selector`` matches (of those whose
        text, stripped, is ``text`` when it is given), scrolled into view; None when there is none."""
        return self.evaluate(f"""(() => {{
          const matches = [...document.querySelectorAll({json.dumps(selector)})]
            .filter(e => {json.dumps(text)} === null || e.textContent.trim() === {json.dumps(text)});
          const e = matches[{number}];
          if (!e) return null;
          e.scrollIntoView({{block: 'nearest'}});
          const r = e.getBoundingClientRect();
          return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")

    def click_on(self, selector, text=None, number=0):
        """A real mouse click in the middle of an element (see :meth:`center`); fails when there is none."""
        point = self.center(selector, text, number)
        if point is None:
            raise LookupError(f"nothing to click: no element {selector!r}" + (f" reading {text!r}" if text else ""))
        self.click(*point)

    def drag(self, start, end, steps=12):
        """A real mouse drag with the left button, from ``start`` to ``end`` ([x, y] in CSS pixels), in steps."""
        (x0, y0), (x1, y1) = start, end
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x0, y=y0)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, button="left", buttons=1, clickCount=1)
        for k in range(1, steps + 1):
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x0 + (x1 - x0) * k / steps,
                      y=y0 + (y1 - y0) * k / steps, button="left", buttons=1)
            self.wait(0.03)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x1, y=y1, button="left", buttons=0,
                  clickCount=1)

    def press(self, key, *modifiers):
        """Press and release one key (``"Enter"``, ``"a"``, ``"ArrowRight"``) with modifiers held (``"Shift"``,
        ``"Control"``, ``"Alt"``), as the keyboard does: the focused element gets the key events."""
        bits = sum(MODIFIERS[m] for m in modifiers)
        code, key_code = KEYS.get(key) or (f"Key{key.upper()}", ord(key.upper()))
        text = key if len(key) == 1 and not bits & (MODIFIERS["Control"] | MODIFIERS["Alt"]) else ""
        text = "\r" if key == "Enter" else text
        params = {"key": key, "code": code, "windowsVirtualKeyCode": key_code, "modifiers": bits}
        self.call("Input.dispatchKeyEvent", type="keyDown" if text else "rawKeyDown", text=text, **params)
        self.call("Input.dispatchKeyEvent", type="keyUp", **params)

    def type(self, text):
        """Text typed into the focused element, the way an input method commits it (one input event)."""
        self.call("Input.insertText", text=text)

    def screenshot(self, path, selector=None, width=1100, margin=0, whole_page=True):
        """A PNG of the element ``selector`` matches (scrolled into view, ``margin`` pixels around it), or of the
        whole page (or, with ``whole_page=False``, of what the window shows: an app such as JupyterLab that
        scrolls inside the window)."""
        with open(path, "wb") as file:
            file.write(self.capture(selector, width, margin, whole_page))

    def capture(self, selector=None, width=1100, margin=0, whole_page=True):
        """The PNG bytes of the element ``selector`` matches (scrolled into view), or of the whole page (or the
        window)."""
        import base64
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=1400, deviceScaleFactor=1, mobile=False)
        self.wait(0.5)
        params = {"format": "png", "captureBeyondViewport": selector is None and whole_page}
        if selector:
            box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                                "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                                "return [r.x + scrollX, r.y + scrollY, r.width, r.height]; })()")
            x, y, width, height = box
            params["clip"] = {"x": max(0, x - margin), "y": max(0, y - margin), "width": width + 2 * margin,
                              "height": height + 2 * margin, "scale": 1}
        # Two animation frames: content that has just scrolled into view (CSS content-visibility) is painted.
        self.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def _receive(self, timeout):
        self._socket.settimeout(timeout)
        try:
            message = json.loads(self._socket.recv())
        except websocket.WebSocketTimeoutException:
            return {}
        self._record(message, self.seen)
        return message

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
