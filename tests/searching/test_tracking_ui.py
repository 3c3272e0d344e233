"""search --track, seen in the MLflow UI: a small search logs to a real tracking server (``mlflow server`` on
127.0.0.1), and the experiment's runs page, opened in headless Chromium, lists every trial's run (the baselines under
their names, the searched trials as ``trial N``) with the baselines tagged: a ``cnntune.baseline`` column added with
the page's own Columns control shows each baseline's name on its run and nothing on the others, and the page's
search box filtering on that tag lists exactly the baselines. The screenshots stay under the test's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuner
from conftest import EpochRunner
from test_tracking import WORDS

CHROMIUM = Path("/usr/bin/chromium")
RUN_NAME = "attributes.`Run Name`"  # the ag-grid column ids of the runs table
BASELINE = "tags.`cnntune.baseline`"
# Each row of the runs table as [run name, cnntune.baseline cell], sorted by name. ag-grid splits a row between its
# pinned and scrolling parts, which share the row's row-index; a run name cell also holds its colour's hidden label.
ROWS_JS = """([name, tag]) => {
  const rows = {};
  for (const cell of document.querySelectorAll('.ag-row [col-id]')) {
    const col = cell.getAttribute('col-id');
    if (col === name || col === tag) {
      (rows[cell.closest('.ag-row').getAttribute('row-index')] ??= {})[col] =
        (cell.querySelector('a') ?? cell).innerText.trim();
    }
  }
  return Object.values(rows).map(row => [row[name] ?? null, row[tag] ?? null])
    .sort((a, b) => String(a[0]) < String(b[0]) ? -1 : String(a[0]) > String(b[0]) ? 1 : 0);
}"""


def _rows(page, expected: dict[str, str]) -> dict[str, str]:
    """The runs table as ``{run name: its cnntune.baseline cell}``, once it shows ``expected`` (the page fetches its
    runs after it renders) or after 20 s, whichever comes first: the caller's assertion then shows the difference."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    want = [list(item) for item in sorted(expected.items())]
    try:
        page.wait_for_function(f"([name, tag, want]) => JSON.stringify(({ROWS_JS})([name, tag])) === "
                               "JSON.stringify(want)", arg=[RUN_NAME, BASELINE, want], timeout=20_000)
    except PlaywrightTimeout:
        pass
    rows = page.evaluate(ROWS_JS, [RUN_NAME, BASELINE])
    table = {name: tag for name, tag in rows}
    assert len(table) == len(rows), rows  # no run listed twice
    return table


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 10_000, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


@pytest.mark.e2e
def test_the_mlflow_ui_lists_the_trials_runs_with_the_baselines_tagged(store, tmp_path, mlflow_server):
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; `make test` installs it "
                    "where apt can)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    from mlflow.tracking import MlflowClient

    url = mlflow_server
    tuner.search(WORDS, tuner.SearchOptions(trials=2, storage=store, study="ui", track=url, warm_start=0),
                 runner=EpochRunner())
    records = tuner.trials(study="ui", storage=store).records
    assert any(r.baseline for r in records) and any(not r.baseline for r in records), records
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("ui").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`cnntune.role` = 'search'")
    # The UI shows a tag a run lacks as "-".
    expected = {rec.baseline or f"trial {rec.number}": rec.baseline or "-" for rec in records}
    expected[parent.info.run_name] = "-"
    baselines = {name: tag for name, tag in expected.items() if tag != "-"}
    baselines[parent.info.run_name] = "-"  # a filtered child run is listed under its parent

    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1000})
            page.set_default_timeout(20_000)
            # MLflow 3's assistant opens itself over the table on a first visit: marked as done already.
            page.add_init_script("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")
            # MLflow 3 opens an experiment on its GenAI overview: the runs table is the model-training view.
            page.goto(f"{url}/#/experiments/{experiment}/runs?workflowType=machine_learning")
            cells = page.locator(f'.ag-row [col-id="{RUN_NAME}"]')
            parent_cell = cells.filter(has=page.get_by_role("link", name=parent.info.run_name, exact=True))
            # The trials' runs are nested under the search's run, collapsed: its expand button lists them.
            parent_cell.get_by_role("button").click()
            page.get_by_role("button", name="Columns", exact=True).click()
            page.get_by_placeholder("Search columns").fill("cnntune.baseline")
            page.get_by_text("cnntune.baseline", exact=True).click()
            page.keyboard.press("Escape")
            assert _rows(page, expected) == expected
            shot = tmp_path / "mlflow-experiment.png"
            page.screenshot(path=shot, full_page=True)
            _assert_png(shot)

            search = page.get_by_test_id("search-box")
            search.fill("tags.`cnntune.baseline` LIKE '%'")
            search.press("Enter")
            assert _rows(page, baselines) == baselines
            page.screenshot(path=tmp_path / "mlflow-baselines.png", full_page=True)
            _assert_png(tmp_path / "mlflow-baselines.png")
        finally:
            browser.close()
