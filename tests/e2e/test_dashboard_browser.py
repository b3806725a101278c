"""The dashboard in a real headless Chromium: the demo's example runs, traffic flows, the page follows.

Needs Debian's `chromium` (/usr/bin/chromium) and PyPI `playwright` (no `playwright install`:
the system browser is used). Saves a screenshot under artifacts/.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from free_ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.e2e

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]


EXAMPLE = ROOT / "examples" / "gke-quickstart"
# Beside the demo's example, so the page has InferenceObjectives to list (the example has none).
OBJECTIVES = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch, namespace: default}
spec: {priority: -1, poolRef: {name: vllm-llama3-8b-instruct}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: interactive, namespace: default}
spec: {priority: 10, poolRef: {name: vllm-llama3-8b-instruct}}
"""


class Demo:
    """`inferpool demo`'s example plus `extra` manifests under `inferpool up`, in its own process
    group, output in a temp file."""

    def __init__(self, admin_port: int, extra: Path) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="inferpool-demo-", suffix=".log", delete=False)
        argv = [str(Path(sys.executable).parent / "inferpool"), "up", "-f", str(EXAMPLE), "-f", str(extra)]
        argv += ["--speed", "20", "--admin-port", str(admin_port), "--no-access-log"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> str:
        """The gateway URL, once the demo prints `ready.`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"demo exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            out = self.output()
            if re.search(r"^ready\.", out, re.M):
                m = re.search(r"^gateway\s+(http://\S+)", out, re.M)
                assert m, out
                return m.group(1)
            time.sleep(0.1)
        raise TimeoutError(f"demo not ready after {timeout}s:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Demo, str, str]]:
    admin_port = free_port()
    objectives = tmp_path / "objectives.yaml"
    objectives.write_text(OBJECTIVES)
    d = Demo(admin_port, objectives)
    try:
        gateway = d.wait_ready()
        yield d, gateway, f"http://127.0.0.1:{admin_port}"
    finally:
        d.stop()


def complete(gateway: str, model: str, request_id: str, prompt: str) -> int:
    body = orjson.dumps({"model": model, "prompt": prompt, "max_tokens": 40})
    req = urllib.request.Request(
        gateway + "/v1/completions",
        body,
        {"Content-Type": "application/json", "x-request-id": request_id},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def send(gateway: str, requests: list[tuple[str, str]]) -> list[int]:
    """Send (model, request id) pairs concurrently; statuses in order."""
    statuses = [0] * len(requests)

    def one(i: int, model: str, rid: str) -> None:
        statuses[i] = complete(gateway, model, rid, f"Review number {i}: the pizza was " * 8)

    threads = [threading.Thread(target=one, args=(i, m, r)) for i, (m, r) in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return statuses


def routed_total(page: Page) -> int:
    return int(
        page.evaluate(
            "() => [...document.querySelectorAll('tr[data-endpoint] [data-routed]')]"
            ".reduce((s, td) => s + Number(td.dataset.routed), 0)"
        )
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
@pytest.mark.skipif(sync_playwright is None, reason="needs the playwright Python package")
def test_dashboard_follows_live_traffic(demo: tuple[Demo, str, str], tmp_path: Path) -> None:
    _, gateway, admin = demo
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=BROWSER_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(admin + "/dashboard")
            page.wait_for_function(
                "() => document.querySelectorAll('tr[data-endpoint]').length === 3", timeout=30_000
            )
            page.wait_for_function(
                "() => document.getElementById('conn').textContent === 'live'", timeout=30_000
            )
            assert page.locator("#decisions tbody tr").count() == 0
            assert page.locator("#no-decisions").is_visible()
            assert routed_total(page) == 0
            names = page.eval_on_selector_all(
                "tr[data-endpoint]", "rows => rows.map(r => r.dataset.endpoint)"
            )
            assert names == [f"vllm-llama3-8b-instruct-{i}" for i in range(3)]
            # The pool's InferenceObjectives, highest priority first, each with its priority.
            objectives = page.eval_on_selector_all(
                "tr[data-objective]", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
            )
            assert objectives == [["interactive", "10"], ["batch", "-1"]]

            requests = [("food-review", f"dash-e2e-food-{i}") for i in range(9)]
            requests += [("meta-llama/Llama-3.1-8B-Instruct", f"dash-e2e-base-{i}") for i in range(3)]
            requests.append(("no-such-model", "dash-e2e-unknown"))
            statuses = send(gateway, requests)
            assert statuses[:12] == [200] * 12, statuses
            assert statuses[12] == 404

            # Endpoint rows follow: every routed request is counted on the row that served it.
            page.wait_for_function(
                "() => [...document.querySelectorAll('tr[data-endpoint] [data-routed]')]"
                ".reduce((s, td) => s + Number(td.dataset.routed), 0) >= 12",
                timeout=30_000,
            )
            assert routed_total(page) == 12
            # The decisions list follows: every request id appears, with the endpoint it went to.
            for _, rid in requests:
                page.wait_for_selector(f'#decisions tr[data-request-id="{rid}"]', timeout=30_000)
            row = page.locator('#decisions tr[data-request-id="dash-e2e-food-0"]')
            assert "vllm-llama3-8b-instruct-" in row.inner_text()
            assert row.locator(".cand").count() >= 1  # candidates with their scores
            assert "queue" in row.locator(".cands").inner_text()
            assert "404" in page.locator('#decisions tr[data-request-id="dash-e2e-unknown"]').inner_text()
            food = page.locator('tr[data-model="food-review"]')
            assert "Standard" in food.inner_text()
            assert not page.locator("#no-decisions").is_visible()

            # A little more load so the charts have a shape, then the screenshot artifact.
            send(gateway, [("food-review", f"dash-e2e-more-{i}") for i in range(24)])
            page.wait_for_function(
                "() => [...document.querySelectorAll('tr[data-endpoint] [data-routed]')]"
                ".reduce((s, td) => s + Number(td.dataset.routed), 0) >= 36",
                timeout=30_000,
            )
            updates = int(page.evaluate("() => Number(document.body.dataset.updates)"))
            page.wait_for_function(
                f"() => Number(document.body.dataset.updates) > {updates + 1}", timeout=30_000
            )
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard-e2e.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            assert errors == []
        finally:
            browser.close()
