"""Headless Chromium driven over the DevTools protocol, with the standard library only.

The browser talks on a pipe (``--remote-debugging-pipe``: it reads commands from its fd 3 and
writes replies and events to its fd 4, each a JSON message ended by a NUL byte), so no port is
opened and no client package is needed. Used by tests/html/test_html_browser.py, and to take the
README's screenshot:

    python tests/helpers/chromium.py compare.html --width 1280 --height 2200 --screenshot page.png
"""

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As root Chromium needs --no-sandbox; the others keep a headless browser from reaching for the
# network on its own (updates, sync, field trials), which is closed here and must stay unused.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--hide-scrollbars", "--remote-debugging-pipe"]


def find_chromium():
    """The Chromium executable (``EXPLORER_CHROMIUM``, else ``chromium`` or
    ``chromium-browser`` on PATH), or None."""
    for candidate in (os.environ.get("EXPLORER_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


class Chromium:
    """One headless browser; ``with Chromium(path) as browser:``."""

    def __init__(self, executable, timeout=30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="explorer-chromium-")
        commands, self._to_browser = os.pipe()
        self._from_browser, replies = os.pipe()
        # Chromium reads fd 3 and writes fd 4: copy our ends there in the child, from fds high
        # enough that neither copy overwrites the other's source.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands, replies)]

        def child_fds():
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=child_fds)
        for fd in (commands, replies, *high):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events = []  # every event received: (method, params, session id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _message(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _keep(self, message):
        """Keep ``message`` in ``events`` if it is an event (it names a method)."""
        if "method" in message:
            self.events.append((message["method"], message.get("params", {}),
                                message.get("sessionId")))

    def send(self, method, params=None, session=None):
        """Call ``method`` and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._keep(reply)

    def wait_for(self, method, session=None):
        """The params of the first event ``method`` (of ``session``), waiting if need be."""
        deadline = time.monotonic() + self.timeout
        while True:
            for name, params, where in self.events:
                if name == method and (session is None or where == session):
                    return params
            self._keep(self._message(deadline))

    def open(self, path, width, height=900):
        """A new tab showing the file ``path`` at ``width`` x ``height`` CSS pixels (a phone's
        viewport rules below 600 px); returns a :class:`Tab` once the page has loaded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1,
                   "mobile": width < 600}, session)
        url = Path(path).resolve().as_uri()
        self.send("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Tab(self, session, url)


class Tab:
    def __init__(self, browser, session, url):
        self.browser, self.session, self.url = browser, session, url

    def _events(self, *methods):
        return [(m, p) for m, p, s in self.browser.events if s == self.session and m in methods]

    def console_errors(self):
        """Console errors, uncaught exceptions and browser errors (a blocked fetch, a
        Content-Security-Policy violation), as text."""
        errors = []
        for method, params in self._events("Runtime.consoleAPICalled", "Runtime.exceptionThrown",
                                           "Log.entryAdded"):
            if method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description")))
                                       for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"])
        return errors

    def requests(self):
        """Every URL the page asked for, but itself (and data: URLs, which never leave it)."""
        return [p["request"]["url"] for _, p in self._events("Network.requestWillBeSent")
                if p["request"]["url"] != self.url and not p["request"]["url"].startswith("data:")]

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-like values)."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression,
                                                        "returnByValue": True}, self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, full_page=False):
        """A PNG of the viewport, or of the whole page."""
        params = {"format": "png"}
        if full_page:
            size = self.browser.send("Page.getLayoutMetrics", session=self.session)
            content = size["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": content["width"], "height": content["height"],
                "scale": 1})
        data = self.browser.send("Page.captureScreenshot", params, self.session)["data"]
        return base64.b64decode(data)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Screenshot a page in headless Chromium.")
    parser.add_argument("page")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--screenshot", required=True, metavar="PNG")
    parser.add_argument("--full", action="store_true", help="the whole page, not the viewport")
    args = parser.parse_args(argv)
    executable = find_chromium()
    if not executable:
        sys.exit("no Chromium found: apt-get install chromium, or set EXPLORER_CHROMIUM")
    with Chromium(executable) as browser:
        tab = browser.open(args.page, args.width, args.height)
        Path(args.screenshot).write_bytes(tab.screenshot(args.full))
        for problem in tab.console_errors() + [f"request: {u}" for u in tab.requests()]:
            print(f"warning: {problem}", file=sys.stderr)


if __name__ == "__main__":
    main()
