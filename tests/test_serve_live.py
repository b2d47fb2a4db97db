"""gliorad serve over a real socket: a uvicorn server on a loopback port with a token and two
prediction processes (the small test bundle of ``tests/test_bundle.py``).

* the browser test: headless Chromium (Debian ``chromium`` + ``chromium-driver``, driven by
  selenium) opens the page without the token (the token form), then with it, uploads a
  synthetic patient through the file input, fills the clinical form, and reads the result
  (the numbers the API gives) and the slice viewer (a tumour drawn in red over a grey slice,
  the sequence buttons and sliders); it saves a screenshot (to ``$GLIORAD_SERVE_SCREENSHOT``
  as well when set: ``docs/img/serve.png`` is made so). Skipped without Chromium, its driver
  or selenium.
* the load test: 20 uploads at once from 20 threads; every one is accepted, every job finishes,
  none is lost, and never more than two run at once (bench/serve_load.py runs the larger one).
* the command line: ``gliorad serve`` refuses a port in use, a missing bundle and bad options
  with exit code 2.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_bundle import SEQUENCES, build_bundle
from typer.testing import CliRunner

from gliorad.bundle import load_model_bundle
from gliorad.serve.app import create_app
from gliorad.serve.settings import ServeSettings

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py

TOKEN = "live-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return build_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def live(built, tmp_path_factory):
    import uvicorn

    port = _free_port()
    settings = ServeSettings(bundle=built.bundle, port=port, workers=2, threads=1, token=TOKEN,
                             data=tmp_path_factory.mktemp("live-data"), max_queue=64)
    app = create_app(settings, bundle=load_model_bundle(built.bundle))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    manager = app.state.manager
    t0 = time.monotonic()
    while not (server.started and all(s.ready for s in manager._slots)):
        assert thread.is_alive() and time.monotonic() - t0 < 300, "the server did not start"
        time.sleep(0.1)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port, app=app, manager=manager)
    server.should_exit = True
    thread.join(60)


def _path(built, seq: str) -> Path:
    return built.cohort / built.held_out / f"{built.held_out}_{seq}.nii.gz"


# ------------------------------------------------------------------------------------ load
def test_load_20_concurrent_uploads_all_finish(live, built):
    import httpx

    files = [(s, (_path(built, s).name, _path(built, s).read_bytes(), "application/gzip"))
             for s in SEQUENCES]
    n = 20
    with httpx.Client(base_url=live.url, headers=AUTH, timeout=120,
                      limits=httpx.Limits(max_connections=n)) as client:
        def upload(i: int) -> tuple[int, dict]:
            r = client.post("/api/jobs", files=files,
                            data={"clinical": json.dumps({"age": str(30 + i), "grade": "II"}),
                                  "patient_id": f"LOAD{i:02d}"})
            return r.status_code, r.json()

        t0 = time.monotonic()
        with cf.ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(upload, range(n)))
        assert [a[0] for a in answers] == [202] * n, answers
        ids = {a[1]["id"]: i for i, a in enumerate(answers)}
        assert len(ids) == n
        status: dict[str, dict] = {}
        most_running = 0
        while time.monotonic() - t0 < 300:
            # (the service's own count, taken at one instant under its lock)
            most_running = max(most_running, live.manager.counts()["running"])
            status = {j: client.get(f"/api/jobs/{j}").json() for j in ids}
            if all(s["status"] in ("done", "failed") for s in status.values()):
                break
            time.sleep(0.2)
        wall = time.monotonic() - t0
        assert [s["status"] for s in status.values()] == ["done"] * n, status
        assert most_running == 2  # both processes busy, never more
        # each job's result is its own patient's (ages differ), none mixed up or lost
        for job_id, i in ids.items():
            r = client.get(f"/api/jobs/{job_id}/result").json()
            assert r["patient_id"] == f"LOAD{i:02d}"
            assert r["survival"]["clinical_values"]["age"] == 30 + i
        probs = {client.get(f"/api/jobs/{j}/result").json()["grading"]["probability_hgg"]
                 for j in ids}
        assert len(probs) == 1  # one patient's images: one grade probability, in either process
    assert wall < 300
    counts = live.manager.counts()
    assert counts["done"] >= n and counts["queued"] == counts["running"] == 0


# --------------------------------------------------------------------------------- browser
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="chromium or chromedriver is not installed (Debian packages 'chromium', "
                           "'chromium-driver')")
def test_browser_uploads_a_patient_and_reads_the_result_and_slices(live, built, tmp_path):
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1100,1000", "--hide-scrollbars"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    wait = WebDriverWait(driver, 120)
    try:
        # without the token: the token form, and no data
        driver.get(live.url + "/")
        wait.until(lambda d: d.find_element(By.ID, "token-panel").is_displayed())
        assert not driver.find_element(By.ID, "main").is_displayed()
        assert "requires a token" in driver.find_element(By.ID, "token-error").text
        # the address the command prints carries the token; the page drops it from the URL
        driver.get(live.url + "/#token=" + TOKEN)
        wait.until(lambda d: d.find_element(By.ID, "main").is_displayed())
        assert driver.current_url == live.url + "/"
        # or the token typed into the form
        driver.execute_script("sessionStorage.clear()")
        driver.refresh()
        wait.until(lambda d: d.find_element(By.ID, "token-panel").is_displayed())
        driver.find_element(By.ID, "token").send_keys(TOKEN + "\n")
        wait.until(lambda d: d.find_element(By.ID, "main").is_displayed())
        # the console so far: the two refused requests without the token (the log is read once)
        assert [e["message"].split(" - ")[1] for e in driver.get_log("browser")] == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ] * 2
        assert "t1, t1ce, t2" in driver.find_element(By.ID, "need-line").text

        driver.find_element(By.ID, "files").send_keys("\n".join(str(_path(built, s))
                                                                for s in SEQUENCES))
        rows = driver.find_elements(By.CSS_SELECTOR, "#assign tbody tr")
        assert [Select(r.find_element(By.TAG_NAME, "select")).first_selected_option.text
                for r in rows] == SEQUENCES  # told from the file names
        assert driver.find_element(By.ID, "assign-status").text == "Ready."
        driver.find_element(By.ID, "clin-age").send_keys("45")
        Select(driver.find_element(By.ID, "clin-grade")).select_by_value("III")
        Select(driver.find_element(By.ID, "clin-histology")).select_by_value("astrocytoma")
        driver.find_element(By.ID, "submit").click()
        wait.until(lambda d: d.find_element(By.ID, "viewer-panel").get_attribute("data-ready") == "1")

        # the page shows what the API gives for the job
        job = driver.execute_script("return state.job")
        import httpx

        result = httpx.get(f"{live.url}/api/jobs/{job['id']}/result", headers=AUTH).json()
        g, s = result["grading"], result["survival"]
        assert driver.find_element(By.ID, "r-hgg").text == f"{g['probability_hgg']:.3f}"
        assert driver.find_element(By.ID, "r-grade").text.startswith(g["predicted_grade"])
        assert driver.find_element(By.ID, "r-risk").text.startswith(s["risk_group"])
        for which in ("integrated", "clinical"):
            cells = driver.find_elements(By.CSS_SELECTOR, f"#r-nomogram-{which} td")
            assert [c.text for c in cells] == [f"{v:.3f}" for v in
                                               s["nomograms"][which]["survival"].values()]
        assert driver.find_element(By.ID, "dl-mask").get_attribute("href").startswith("blob:")

        # the viewer: a grey slice with the tumour in red at the mask's centre
        pixels = driver.execute_script("""
            const c = document.getElementById('view-axial');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let red = 0, grey = 0;
            for (let i = 0; i < d.length; i += 4) {
              if (d[i] > d[i + 1] + 60 && d[i] > d[i + 2] + 60) red++;
              else if (d[i] > 40 && d[i] === d[i + 1] && d[i] === d[i + 2]) grey++;
            }
            return [red, grey, c.width, c.height];""")
        assert pixels[0] > 200 and pixels[1] > 2000, pixels
        axial = driver.find_element(By.ID, "view-axial")
        assert int(axial.get_attribute("data-tumour-voxels")) > 0
        assert axial.get_attribute("data-sequence") == "t1ce"
        driver.find_element(By.CSS_SELECTOR, "#seq-buttons button[data-sequence='t2']").click()
        assert axial.get_attribute("data-sequence") == "t2"
        driver.execute_script("""const s = document.getElementById('slice-axial');
            s.value = 0; s.dispatchEvent(new Event('input'));""")
        assert axial.get_attribute("data-slice") == "0"
        assert axial.get_attribute("data-tumour-voxels") == "0"  # no tumour at the edge
        driver.find_element(By.CSS_SELECTOR, "#seq-buttons button[data-sequence='t1ce']").click()
        driver.execute_script("""const s = document.getElementById('slice-axial');
            s.value = state.viewer.meta.centre[0]; s.dispatchEvent(new Event('input'));""")
        assert int(axial.get_attribute("data-tumour-voxels")) > 0
        _screenshot(driver, tmp_path / "serve.png")
        assert driver.get_log("browser") == []  # no script error, no failed request
        # deleting the job from the page removes it on the service
        driver.find_element(By.ID, "delete-job").click()
        wait.until(lambda d: not d.find_element(By.ID, "result-panel").is_displayed())
        assert httpx.get(f"{live.url}/api/jobs/{job['id']}", headers=AUTH).status_code == 404
    finally:
        driver.quit()


def _screenshot(driver, path: Path) -> None:
    """The page from the result down (the viewer included), as a PNG: ``path`` and, when set,
    ``$GLIORAD_SERVE_SCREENSHOT``."""
    top = driver.execute_script("return document.getElementById('result-panel').offsetTop - 10")
    bottom = driver.execute_script("const v = document.getElementById('viewer-panel');"
                                   "return v.offsetTop + v.offsetHeight + 5")
    width = driver.execute_script("return document.body.scrollWidth")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": top, "width": width, "height": bottom - top, "scale": 1}})
    data = base64.b64decode(shot["data"])
    assert data.startswith(b"\x89PNG")
    path.write_bytes(data)
    target = os.environ.get("GLIORAD_SERVE_SCREENSHOT")
    if target:
        Path(target).write_bytes(data)


# ---------------------------------------------------------------------------- command line
def test_cli_refuses_a_port_in_use_a_missing_bundle_and_bad_options(live, built, tmp_path):
    from gliorad.commands.serve import app

    runner = CliRunner()
    r = runner.invoke(app, ["--bundle", str(built.bundle), "--port", str(live.port)])
    assert r.exit_code == 2
    assert f"error: --host 127.0.0.1 --port {live.port}: cannot listen there (Address already " \
           "in use); choose another --port" in r.output
    r = runner.invoke(app, ["--bundle", str(tmp_path / "nope"), "--port", str(_free_port())])
    assert r.exit_code == 2 and "model bundle folder not found" in r.output
    r = runner.invoke(app, ["--bundle", str(built.bundle), "--workers", "0", "--keep-hours", "-1",
                            "--token", "short"])
    assert r.exit_code == 2
    assert r.output.splitlines() == [
        "error: --workers 0: expected at least 1",
        "error: --keep-hours -1: expected a positive number",
        ("error: --token: too short; expected at least 16 characters (or leave it out and use "
         "the generated one)")]
