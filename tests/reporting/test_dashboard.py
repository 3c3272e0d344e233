"""``cnntune dashboard``: optuna-dashboard on the study store, seen in a real browser (headless Chromium), and its
bad input answered with one line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import tuner
from conftest import ROOT, SYN, FakeRunner, one_line_error, run_cli, run_python

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def study(store) -> tuple[str, int]:
    """``(storage URL, number of trials)`` of a study ``basenet``: its baseline and 2 searched trials."""
    tuner.search(["space=basenet", *SYN], tuner.SearchOptions(trials=2, storage=store), runner=FakeRunner())
    import optuna

    return store, len(optuna.load_study(study_name="basenet", storage=store).trials)


def _wait_for_url(log: Path, proc: subprocess.Popen, deadline: float) -> str:
    """The URL the dashboard printed, once it answers with HTTP 200."""
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}:\n{log.read_text()}")
        if url is None:
            found = re.search(r"http://\S+/dashboard\S*", log.read_text())
            url = found and found.group(0)
        if url is not None:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return url
            except OSError:
                pass
        time.sleep(0.1)
    pytest.fail(f"the dashboard did not answer in time:\n{log.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _assert_screenshot(path: Path) -> None:
    """A real picture: a PNG of the viewport's size with more than a handful of colours (a blank page has one)."""
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 10_000, path
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 1000 and image.height >= 700, (image.format, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is None or len(colours) > 20, len(colours)


@pytest.mark.slow
def test_the_dashboard_shows_the_study_and_its_trials_in_a_browser(study, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; `make test` installs it "
                    "where apt can)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    store, n_trials = study
    log = tmp_path / "dashboard.log"
    with log.open("w") as sink:
        # Port 0: the dashboard takes a free port and prints its URL, so no other process can take it in between.
        proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "dashboard", "--storage", store, "--study",
                                 "basenet", "--port", "0"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = _wait_for_url(log, proc, time.monotonic() + 30)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard/studies/\d+", url), url
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM))
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                # The SPA renders after its API calls: the study's title bar, then its history plot's card.
                page.get_by_text("basenet (id=", exact=False).first.wait_for(timeout=15_000)
                page.get_by_text("Best Trial (number=").first.wait_for(timeout=15_000)
                shot = tmp_path / "study.png"
                page.screenshot(path=str(shot))
                _assert_screenshot(shot)
                page.goto(url + "/trials")
                page.get_by_text(f"{n_trials} Trials", exact=True).wait_for(timeout=15_000)
                body = page.inner_text("body")
                for number in range(n_trials):
                    assert f"Trial {number}" in body, body[:2000]
                assert f"Trial {n_trials}\n" not in body, body[:2000]
                page.screenshot(path=str(tmp_path / "trials.png"))
                _assert_screenshot(tmp_path / "trials.png")
            finally:
                browser.close()
        assert proc.poll() is None, log.read_text()  # still serving after the browser's requests
        # The terminal keeps the one line with the URL: no access log, no library warnings.
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"dashboard at {url} "), lines
    finally:
        _stop(proc)


def test_ctrl_c_stops_the_dashboard_quietly(study, tmp_path):
    store, _ = study
    log = tmp_path / "dashboard.log"
    with log.open("w") as sink:
        # As a command in a terminal's foreground gets it: a test run started in the background (``cmd &`` in a
        # script) inherits SIGINT ignored, and Python then keeps ignoring it.
        proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "dashboard", "--storage", store, "--port", "0"],
                                cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = _wait_for_url(log, proc, time.monotonic() + 30)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard", url), url  # no --study: the list of studies
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0, log.read_text()  # how a dashboard ends, not an interrupted job
        assert log.read_text().strip().splitlines() == [log.read_text().strip()], log.read_text()
    finally:
        _stop(proc)


def test_the_dashboard_serves_the_api_and_stays_light(study):
    # In a fresh interpreter: the command's import path and serving load neither Keras nor TensorFlow.
    store, n_trials = study
    code = (
        "import json, sys, threading, urllib.request\n"
        "import tuner.cli\n"
        "from tuner.reporting._dashboard import open_dashboard\n"
        f"board = open_dashboard({store!r}, 'basenet', '127.0.0.1', 0)\n"
        "threading.Thread(target=board.serve, daemon=True).start()\n"
        "try:\n"
        "    with urllib.request.urlopen(board.url, timeout=10) as r:\n"
        "        assert r.status == 200 and b'<html' in r.read().lower()\n"
        "    api = board.url.split('/dashboard')[0] + '/api/studies'\n"
        "    with urllib.request.urlopen(api, timeout=10) as r:\n"
        "        studies = json.load(r)['study_summaries']\n"
        "finally:\n"
        "    board.close()\n"
        "print(board.url, [s['study_name'] for s in studies])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_tuner'))\n"
        "assert not heavy, heavy\n"
    )
    printed = run_python(code)
    assert re.match(r"http://127\.0\.0\.1:\d+/dashboard/studies/\d+ \['basenet'\]", printed), printed


def test_a_port_in_use_is_one_line(study):
    store, _ = study
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(run_cli("dashboard", "--storage", store, "--port", str(port)), "in use", str(port), "--port")


@pytest.mark.parametrize("args, needles", [
    (["--port", "70000"], ["--port", "70000"]),
    (["--host", "no.such.host.invalid"], ["cannot listen on no.such.host.invalid"]),
    (["--study", "nope"], ["no study named 'nope'", "known: basenet"]),
])
def test_bad_options_are_one_line(study, args, needles):
    store, _ = study
    one_line_error(run_cli("dashboard", "--storage", store, "--port", "0", *args), *needles)


@pytest.mark.parametrize("kind", ["missing", "not_a_database", "not_a_url", "no_server"])
def test_a_storage_that_cannot_be_opened_is_one_line(store, tmp_path, kind):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database")
    url, needles = {
        "missing": (f"sqlite:///{tmp_path / 'none.db'}", ["no study store at"]),
        "not_a_database": (f"sqlite:///{bad}", ["cannot open storage", "not a database"]),
        "not_a_url": ("nonsense", ["cannot open storage 'nonsense'"]),
        # Port 1 on loopback refuses at once; the password must not appear.
        "no_server": ("postgresql://u:secret@127.0.0.1:1/db", ["cannot open storage", "u:***@"]),
    }[kind]
    line = one_line_error(run_cli("dashboard", "--storage", url, "--port", "0"), *needles)
    assert "secret" not in line
    assert not (tmp_path / "none.db").exists()  # a dashboard never creates an empty store


def test_the_url_opens_from_this_machine():
    from tuner.reporting import dashboard_url

    assert dashboard_url("127.0.0.1", 8080) == "http://127.0.0.1:8080/dashboard"
    assert dashboard_url("0.0.0.0", 8080, 3) == "http://127.0.0.1:8080/dashboard/studies/3"
    assert dashboard_url("::", 9000) == "http://[::1]:9000/dashboard"
    assert dashboard_url("::1", 9000, 1) == "http://[::1]:9000/dashboard/studies/1"
    assert dashboard_url("gpu-box", 80) == "http://gpu-box:80/dashboard"
