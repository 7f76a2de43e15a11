"""The live dashboard in a real headless Chromium: loads cleanly, shows the actors, follows a kill."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from llmos_actors.testing import start_daemon, wait_for  # noqa: E402
from tests.actors import Counter  # noqa: E402
from tests.metrics_actors import Reporter  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
#: Screenshots land here (ignored by git) so a person can look at them after the run.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
    "`make test` installs them when run as root)",
)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def row_state(driver: object, name: str) -> str | None:
    """The row's state, or None while it is absent (or being redrawn: the next poll reads the new row)."""
    from selenium.common.exceptions import StaleElementReferenceException

    rows = driver.find_elements("css selector", f'#actors tr[data-actor="{name}"]')  # type: ignore[attr-defined]
    try:
        return rows[0].get_attribute("data-state") if rows else None
    except StaleElementReferenceException:
        return None


def test_dashboard_shows_a_live_workload_and_follows_a_kill(browser: object) -> None:
    driver = browser
    with start_daemon(metrics={"listen": "127.0.0.1:0"}) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        refs = {name: kernel.spawn(Counter, name=name) for name in ("alpha", "beta", "gamma")}
        for i in range(200):
            refs["alpha"].call("incr")
            refs["beta"].tell("incr") if i % 2 else refs["gamma"].call("incr")
        kernel.spawn(Reporter, name="llm").call("generate", 7)  # an LLM device's numbers (on_metrics)
        driver.get(url)  # type: ignore[attr-defined]
        wait_for(lambda: all(row_state(driver, n) == "running" for n in refs), timeout=20, interval=0.1, what="3 rows")
        panel = '#llm [data-llm="llm"]'
        wait_for(
            lambda: "5 used of 20" in "".join(e.text for e in driver.find_elements("css selector", panel)),  # type: ignore[attr-defined]
            timeout=10,
            what="the LLM device's KV blocks",
        )
        wait_for(
            lambda: driver.find_element("id", "live").text == "live",  # type: ignore[attr-defined]
            timeout=10,
            what="the event stream",
        )
        # Keep alpha busy while the page collects a few seconds of history for its sparklines.
        points = "return document.querySelector('#actors tr[data-actor=alpha] svg.spark polyline').points.numberOfItems"

        def enough_points() -> bool:
            for _ in range(50):
                refs["alpha"].call("incr")
            return driver.execute_script(points) >= 5  # type: ignore[attr-defined]

        wait_for(enough_points, timeout=20, interval=0.05, what="5 sparkline points")
        kernel.kill(refs["beta"])
        wait_for(lambda: row_state(driver, "beta") == "exited", timeout=15, interval=0.1, what="beta shown as exited")
        assert row_state(driver, "alpha") == "running"
        assert "kill" not in driver.find_element("id", "actors").text  # type: ignore[attr-defined]  # read-only
        # Every panel rendered from the state (nothing left at its placeholder).
        assert "connecting" not in driver.find_element("id", "daemon").text  # type: ignore[attr-defined]
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
        assert shot.stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
        assert not errors, errors
        state = json.loads(urllib.request.urlopen(url + "api/state", timeout=10).read())
        assert {a["name"] for a in state["actors"]} >= {"alpha", "beta", "gamma"}
        assert state["admin"] is False


def test_admin_sees_kill_and_restart_buttons(browser: object) -> None:
    driver = browser
    with start_daemon(metrics={"listen": "127.0.0.1:0", "admin": True}) as d, d.connect() as kernel:
        url = kernel.status()["metrics"]["url"]
        kernel.spawn(Counter, name="doomed")
        sup = kernel.supervisor(name="tree", strategy="one_for_one")
        sup.spawn(Counter, name="phoenix", restart="permanent")
        driver.get(url)  # type: ignore[attr-defined]
        wait_for(lambda: row_state(driver, "doomed") == "running", timeout=20, interval=0.1, what="the row")
        tree = driver.find_element("css selector", '#tree [data-supervisor="tree"]')  # type: ignore[attr-defined]
        assert "phoenix" in tree.text and "one_for_one" in tree.text
        driver.execute_script("window.confirm = () => true;")  # type: ignore[attr-defined]

        def click(actor: str, label: str) -> None:
            """Click the row's button; a row redrawn under us (each update) is found again."""
            from selenium.common.exceptions import StaleElementReferenceException

            def clicked() -> bool:
                css = f'#actors tr[data-actor="{actor}"] button'
                try:
                    buttons = driver.find_elements("css selector", css)  # type: ignore[attr-defined]
                    assert [b.text for b in buttons] == ["kill", "restart"]
                    next(b for b in buttons if b.text == label).click()
                except StaleElementReferenceException:
                    return False
                return True

            wait_for(clicked, timeout=10, what=f"{label} clicked")

        click("doomed", "kill")
        wait_for(lambda: row_state(driver, "doomed") == "exited", timeout=15, interval=0.1, what="killed from the page")
        pid = next(r["pid"] for r in kernel.ps() if r["name"] == "phoenix")
        click("phoenix", "restart")
        wait_for(
            lambda: any(r["name"] == "phoenix" and r["restarts"] == 1 and r["state"] == "running" for r in kernel.ps()),
            timeout=20,
            what="restarted by its supervisor",
        )
        assert next(r["pid"] for r in kernel.ps() if r["name"] == "phoenix") != pid
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
        assert not errors, errors
        sup.stop()
