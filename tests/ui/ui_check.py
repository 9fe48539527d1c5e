"""`make ui-check`: look at the MLflow record as a user does, in headless Chromium.

Builds a fresh tiny demo-like store (the flow tests' tiny data, two epochs per variant), serves it
with `mlflow server` on loopback, and saves screenshots of the runs table, the parent run, the
compare view of the two variants, their plots side by side in the chart view and the registered
model. It fails when a page does not show what a user needs: both variants by name with every
column of the shared view (test figures, ECE, worst robust AUC) as the store holds them, the
parent's figures for both variants, each variant's plots under the same key, the model's
aliases. Then it starts `detector serve` on the newest registered model's
@champion, chooses two images on its page and checks that each one's verdict and P(AI-generated)
render as /predict returns them.

    python -m tests.ui.ui_check [--out work/ui-check] [--store sqlite:///mlflow.db] [--readme-shot docs/mlflow-runs.png]
                                [--serve-shot docs/serve-page.png]

Browser: Debian's chromium (`apt-get install chromium`) driven by Playwright's Python package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from mlflow import MlflowClient
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from components import record
from components.data import demo_data
from tests.conftest import free_port, wait_for_http

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A loaded 2-core machine renders the first page of the UI in tens of seconds.
PAGE_TIMEOUT_MS = 120_000
TINY = ["data.image_size=32", "data.images_per_shard=16", "variant.fit.epochs=2", "variant.fit.batch_size=16"]
# Image keys (record.log_picture) the chart view must show for both variants: training's, evaluation's, trust's.
PLOT_KEYS = ("plots/learning_curves", "plots/confusion_matrix_tuned", "plots/reliability", "plots/robustness", "plots/roc")
# The element that scrolls the chart view's cards (it is not the page).
SCROLLING_ANCESTOR = """element => {
    let node = element.parentElement;
    while (node && !(node.scrollHeight > node.clientHeight + 1 && ["auto", "scroll"].includes(getComputedStyle(node).overflowY))) {
        node = node.parentElement;
    }
    return node || document.scrollingElement;
}"""
# MLflow prints a stored float in full: more decimals than the rounding gives (six, for the threshold) are float noise.
MAX_DECIMALS = 6


class UiCheckFailed(AssertionError):
    """A page does not show what the record promises; the message names the page and the value."""


def build_store(out: Path) -> str:
    """A fresh demo-like store: tiny demo data, `detector compare` on the demo profile."""
    if out.exists():
        shutil.rmtree(out)
    data = out / "demo-data"
    demo_data.run(demo_data.DemoDataConfig(out_dir=str(data), train_per_class=24, test_per_class=6, image_size=32))
    uri = f"sqlite:///{out / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PREFECT_HOME": str(out / "prefect"), "PYTHONPATH": str(REPO)}
    overrides = [item for setting in [*TINY, f"work_dir={out / 'work'}"] for item in ("--set", setting)]
    command = [sys.executable, "-m", "components.cli", "compare", "--data", str(data), *overrides]
    # cwd=out: the sqlite store puts its artifacts in ./mlruns.
    finished = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True)
    if finished.returncode:
        raise UiCheckFailed(f"detector compare failed ({finished.returncode}):\n{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}")
    return uri


@contextlib.contextmanager
def mlflow_server(store_uri: str, log_path: Path):
    port = free_port()
    # The UI needs no background jobs; MLflow's job runner would start seven more processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "w") as log:
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1", "--port", str(port)]
        # Its own session, so stopping it stops its workers too.
        server = subprocess.Popen([*command, "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{url}/health", server, timeout=180)
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def latest_comparison(client: MlflowClient) -> tuple[str, object, dict[str, object]]:
    """The newest parent run and its two variant runs, read through the server's REST API."""
    for experiment in client.search_experiments():
        parents = client.search_runs([experiment.experiment_id], "tags.kind = 'comparison'", order_by=["attributes.start_time DESC"])
        if parents:
            parent = parents[0]
            children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
            return experiment.experiment_id, parent, {run.info.run_name: run for run in children}
    raise UiCheckFailed("no comparison run in the store: run `make demo` or let ui-check build its own store")


def check_runs_table(page, url: str, experiment_id: str, variants: dict[str, object]) -> None:
    page.goto(record.runs_view_url(url, experiment_id))
    page.locator('[role="row"] [col-id="attributes.`Run Name`"]').first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _close_assistant(page)  # its panel narrows the table, which then leaves more columns unrendered
    for name, run in variants.items():
        row = page.locator(f'[role="row"][row-id="{run.info.run_id}"]')
        shown_name = row.locator('[col-id="attributes.`Run Name`"]')
        shown_name.wait_for(timeout=PAGE_TIMEOUT_MS)
        if name not in shown_name.inner_text():
            raise UiCheckFailed(
                f"runs table: the row of run {run.info.run_id} is not named {name!r}. Received: {shown_name.inner_text()!r}"
            )
        for metric in record.RUNS_VIEW_COLUMNS:
            text, expected = _cell_text(page, row, f"metrics.`{metric}`"), run.data.metrics[metric]
            if not _same_number(text, expected):
                raise UiCheckFailed(f"runs table: {name}'s {metric} column shows {text!r}, expected {expected}")
            if len(text.partition(".")[2]) > MAX_DECIMALS:
                raise UiCheckFailed(f"runs table: {name}'s {metric} column shows float noise: {text!r}")


def _cell_text(page, row, column: str) -> str:
    """The runs table orders metric columns by name and renders only those near the visible ones."""
    cell = row.locator(f'[col-id="{column}"]')
    if not _scroll_until(page, page.locator(".ag-body-horizontal-scroll-viewport"), cell, "scrollLeft"):
        raise UiCheckFailed(f"runs table: no column {column}")
    return cell.first.inner_text().strip()


def _shows_picture(page, picture, prepare=lambda: None) -> bool:
    """The <img> is there and decoded. Found afresh each try, after `prepare`: the view re-renders
    its cards as their pictures load, and a handle to the first <img> would go stale."""
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        with contextlib.suppress(PlaywrightError):
            prepare()
            if picture.first.evaluate("image => image.complete && image.naturalWidth > 0", timeout=5_000):
                return True
        page.wait_for_timeout(500)
    return False


def _scroll_until(page, scroller, target, side: str) -> bool:
    """Scroll `scroller` (a locator or element handle; `side`: scrollLeft or scrollTop) from the
    start until `target` exists: the UI renders only the rows, columns and cards in view."""
    scroller = getattr(scroller, "first", scroller)
    for offset in range(0, 6000, 150):
        scroller.evaluate(f"(element, offset) => {{ element.{side} = offset; }}", offset)
        with contextlib.suppress(PlaywrightTimeoutError):
            target.first.wait_for(state="attached", timeout=500)
            return True
    return False


def check_parent(page, url: str, experiment_id: str, parent) -> None:
    page.goto(f"{url}/#/experiments/{experiment_id}/runs/{parent.info.run_id}")
    page.get_by_text("baseline vs improved").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    # Unfold the description (it holds the comparison table); the link appears once it is laid out,
    # and not at all when the description is short.
    with contextlib.suppress(PlaywrightTimeoutError):
        page.get_by_text("Show more", exact=True).first.click(timeout=10_000)
    for name in ("baseline/test/auc", "improved/test/auc"):
        if not page.get_by_text(name, exact=True).count():
            raise UiCheckFailed(f"parent run page: metric {name!r} is not shown")


def check_compare(page, url: str, experiment_id: str, variants: dict[str, object]) -> None:
    ids = json.dumps([run.info.run_id for run in variants.values()])
    page.goto(f"{url}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments={urllib.parse.quote(json.dumps([experiment_id]))}")
    metrics = page.locator('[role="grid"]').filter(has=page.locator('a[title="Plot chart"]'))
    metrics.first.wait_for(timeout=PAGE_TIMEOUT_MS)
    body = page.inner_text("body")
    for name in variants:
        if name not in body:
            raise UiCheckFailed(f"compare view: variant {name!r} is not shown")
    # Metrics are listed by name: calibration/* and robust/* come before test/*.
    if not _scroll_until(page, metrics, metrics.get_by_role("link", name="test/auc", exact=True), "scrollTop"):
        raise UiCheckFailed("compare view: metric 'test/auc' is not shown")


def check_plots(page, url: str, experiment_id: str, variants: dict[str, object]) -> None:
    """The chart view of the shared runs view: one image card per key, each variant's picture in it.
    (The compare-runs page lists only files at a run's artifact root, so it shows none.)"""
    page.goto(f"{record.runs_view_url(url, experiment_id)}&compareRunsMode=CHART")
    search = page.get_by_placeholder("Search metric charts")
    search.wait_for(timeout=PAGE_TIMEOUT_MS)
    _close_assistant(page)
    search.fill("plots/")  # hides the metric charts above; the search leaves image cards alone
    cards = page.locator('[data-testid="experiment-view-compare-runs-card"]')
    cards.first.wait_for(timeout=PAGE_TIMEOUT_MS)
    for key in PLOT_KEYS:
        for name, run in variants.items():
            if not _card_shows(page, cards, key, run.info.run_id):
                raise UiCheckFailed(f"chart view: no image card {key!r} with a picture of {name}")
    _full_screen(page, cards.filter(has=page.locator(f'h4[title="{PLOT_KEYS[-1]}"]')), variants)  # the ROC curves


def _card_shows(page, cards, key: str, run_id: str) -> bool:
    """Whether the image card `key` shows the run's picture. The chart view renders only the cards
    in sight, and re-renders them (scrolled back to the top) as it refreshes its runs: each try
    scrolls to the card afresh and centres it, so that all its pictures render."""
    card = cards.filter(has=page.locator(f'h4[title="{key}"]'))

    def bring_into_sight() -> None:
        if card.count() or _scroll_until(page, cards.first.evaluate_handle(SCROLLING_ANCESTOR), card, "scrollTop"):
            card.first.evaluate("element => element.scrollIntoView({block: 'center'})")

    return _shows_picture(page, card.locator(f'img[src*="run_uuid={run_id}"]'), bring_into_sight)


def _full_screen(page, card, variants: dict[str, object]) -> None:
    """The screenshot's view of an image card: full screen, the variants' pictures in a row. Run
    parameters off first: their text fills a card and pushes each picture below it."""
    card.locator('[data-testid="experiment-view-compare-runs-card-menu"]').click()
    page.get_by_role("menuitem", name="Configure").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("switch").click()  # "Show run parameters", the dialog's only switch
    dialog.get_by_role("button", name="Save changes").click()
    dialog.wait_for(state="hidden", timeout=PAGE_TIMEOUT_MS)
    card.locator('[data-component-id="fullscreen_button_chartcard"]').click()
    for name, run in variants.items():
        if not _shows_picture(page, page.get_by_role("dialog").locator(f'img[src*="run_uuid={run.info.run_id}"]')):
            raise UiCheckFailed(f"chart view: the full-screen card shows no picture of {name}")


def check_model(page, url: str, client: MlflowClient) -> str:
    [model] = client.search_registered_models(max_results=1, order_by=["last_updated_timestamp DESC"])
    page.goto(f"{url}/#/models/{urllib.parse.quote(model.name)}")
    page.get_by_text("Version 1").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    body = " ".join(page.inner_text("body").split())  # the alias pill separates "@" with a no-break space
    for alias in model.aliases:
        if f"@ {alias}" not in body:
            raise UiCheckFailed(f"registered model page: alias {alias!r} of {model.name} is not shown")
    return model.name


def _same_number(text: str, expected: float) -> bool:
    try:
        return abs(float(text) - expected) < 1e-9
    except ValueError:
        return False


def screenshots(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment_id, parent, variants = latest_comparison(client)
    if sorted(variants) != ["baseline", "improved"]:
        raise UiCheckFailed(f"the comparison's child runs are not named baseline and improved. Received: {sorted(variants)}")
    shots = []
    with sync_playwright() as playwright:
        profile = out / "chromium-profile"
        shutil.rmtree(profile, ignore_errors=True)  # a new empty profile: no saved view state from an earlier check
        browser = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_FLAGS, viewport={"width": 1500, "height": 900}
        )
        page = browser.new_page()
        steps = (
            ("runs-table", lambda: check_runs_table(page, url, experiment_id, variants)),
            ("parent-run", lambda: check_parent(page, url, experiment_id, parent)),
            ("compare-variants", lambda: check_compare(page, url, experiment_id, variants)),
            ("compare-plots", lambda: check_plots(page, url, experiment_id, variants)),
            ("registered-model", lambda: check_model(page, url, client)),
        )
        try:
            for name, check in steps:
                check()
                _close_assistant(page)
                shots.append(out / f"{name}.png")
                page.screenshot(path=str(shots[-1]), full_page=True)
        except Exception:
            page.screenshot(path=str(out / "failed.png"), full_page=True)
            raise
        finally:
            browser.close()
    return shots


@contextlib.contextmanager
def detector_service(store_uri: str, model_name: str, log_path: Path):
    """`detector serve` on the model's @champion, as the README starts it."""
    port = free_port()
    settings = ["--set", f"model_uri=models:/{model_name}@champion", "--set", f"port={port}"]
    command = [sys.executable, "-m", "components.cli", "serve", *settings]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "PYTHONPATH": str(REPO)}
    env.pop("DETECTOR_API_TOKEN", None)
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", server, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def check_serve_page(store_uri: str, out: Path) -> Path:
    """The service's page, used as a person would: choose two images, see each one's verdict and
    P(AI-generated); the figures must be the ones /predict returns for the same files."""
    import requests
    from playwright.sync_api import sync_playwright

    [model] = MlflowClient(tracking_uri=store_uri).search_registered_models(max_results=1, order_by=["last_updated_timestamp DESC"])
    images = _two_images(out / "serve-images")
    with detector_service(store_uri, model.name, out / "detector-serve.log") as url:
        files = [("images", (path.name, path.read_bytes())) for path in images]
        expected = {row["name"]: row for row in requests.post(f"{url}/predict", files=files, timeout=60).json()["predictions"]}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            try:
                page.goto(url)
                page.wait_for_selector("#model:has-text('version')")
                page.set_input_files("#files", [str(path) for path in images])
                page.wait_for_function("document.querySelectorAll('.verdict').length === 2", timeout=60_000)
                for card in page.locator(".card").all():
                    name = card.locator(".name").inner_text()
                    row = expected[name]
                    shown = card.locator(".probability").inner_text()
                    if shown != f"P(AI-generated): {100 * row['p_ai_generated']:.1f} %":
                        raise UiCheckFailed(f"serve page: {name} shows {shown!r}, /predict says {row['p_ai_generated']}")
                    verdict = card.locator(".verdict").inner_text()
                    if verdict != ("Looks real" if row["verdict"] == "real" else "Looks AI-generated"):
                        raise UiCheckFailed(f"serve page: {name} shows {verdict!r}, /predict says {row['verdict']}")
                shot = out / "serve-page.png"
                page.screenshot(path=str(shot), full_page=True)
            except Exception:
                page.screenshot(path=str(out / "failed-serve.png"), full_page=True)
                raise
            finally:
                browser.close()
    return shot


def _two_images(folder: Path) -> list[Path]:
    """A photo-like gradient and a flat synthetic pattern, as JPEG and PNG."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.linear_gradient("L").resize((160, 120)).convert("RGB")
    pattern = Image.new("RGB", (128, 128), "#3b6ea8")
    ImageDraw.Draw(pattern).ellipse((24, 24, 104, 104), fill="#e8c547")
    photo.save(folder / "gradient.jpg", quality=90)
    pattern.save(folder / "pattern.png")
    return [folder / "gradient.jpg", folder / "pattern.png"]


def _close_assistant(page) -> None:
    """The MLflow Assistant side panel opens by default and takes a third of the screen. Its own
    button: other "Close" buttons (the shared-view banner's, a search box's) must stay."""
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count() and close.first.is_visible():
        close.first.click()
        page.wait_for_timeout(300)  # the panel's slide-out animation, before the screenshot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ui-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="work/ui-check", help="Screenshots (and the fresh store) go here (default: %(default)s).")
    parser.add_argument("--store", help="Check this tracking store (e.g. sqlite:///mlflow.db after `make demo`) instead of a fresh one.")
    parser.add_argument("--readme-shot", help="Also copy the runs-table screenshot here, e.g. docs/mlflow-runs.png.")
    parser.add_argument("--serve-shot", help="Also copy the `detector serve` page's screenshot here, e.g. docs/serve-page.png.")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        sys.exit(f"ui-check needs Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; or set CHROMIUM=/path/to/chromium)")
    out = Path(args.out).resolve()
    started = time.monotonic()
    store = args.store or build_store(out)
    out.mkdir(parents=True, exist_ok=True)
    built = time.monotonic()
    with mlflow_server(store, out / "mlflow-server.log") as url:
        shots = screenshots(url, out)
    shots.append(check_serve_page(store, out))
    if args.readme_shot:
        shutil.copyfile(shots[0], args.readme_shot)
    if args.serve_shot:
        shutil.copyfile(shots[-1], args.serve_shot)
    print(f"ui-check passed: store {built - started:.0f} s, server and browser {time.monotonic() - built:.0f} s")
    for shot in shots:
        print(f"  {shot}")


if __name__ == "__main__":
    main()
