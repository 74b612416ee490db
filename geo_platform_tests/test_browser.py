"""The Dagster UI in headless Chromium: launch a partitioned COG run from the catalog.

Starts ``dagster dev`` on a free port against a throwaway data folder and instance,
then, like a user would: Catalog -> select ``raster_validation`` and ``cog_analysis`` ->
"Materialize selected" -> pick the partition -> "Launch 1 run" -> follow the run until
the UI says "Success". The instance and the blob folder are checked afterwards.

Both assets are launched together because ``cog_analysis`` loads ``raster_validation``'s
output: launching the tier alone would depend on whether the ``bronze_rasters`` sensor
(default RUNNING, it also picks the file up) already validated the raster.

Needs Debian's ``/usr/bin/chromium`` (``make browser-deps``); Playwright's own browser
download does not work here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_platform.instance import instance_template
from geo_platform.settings import Profile

from .tier_blobs import tier_file

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
RASTER = REPO_ROOT.parent / "shared" / "data" / "real" / "rasters" / "image_rgb.tif"
PARTITION_KEY = "demo/image_rgb.tif"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_TIMEOUT_S = 90
RUN_TIMEOUT_S = 120
UI_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no output)"


def _reset_signals() -> None:
    # Started from a non-interactive parent, `dagster dev` would ignore SIGINT/SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the whole group (webserver, daemon, code server, runs), then SIGKILL."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while _group_alive(pgid) and time.monotonic() < deadline:
            proc.poll()  # reap the leader, or it lingers as a zombie member of the group
            time.sleep(0.2)
        if not _group_alive(pgid):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class DagsterDev:
    def __init__(self, proc: subprocess.Popen, url: str, stdout: Path, stderr: Path):
        self.proc, self.url, self.stdout, self.stderr = proc, url, stdout, stderr

    def logs(self) -> str:
        return f"--- dagster dev stderr (tail) ---\n{_tail(self.stderr)}"


@pytest.fixture
def platform_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A data folder with one raster in bronze, and an instance knowing its partition."""
    # Skip before anything starts a server.
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: run `make browser-deps` (Debian's chromium package)")
    pytest.importorskip("playwright.sync_api")
    if not RASTER.is_file():
        pytest.skip(f"test raster missing: {RASTER}")
    data_dir = tmp_path / "data"
    dagster_home = tmp_path / "dagster_home"
    bronze = data_dir / "blobs" / "bronze" / PARTITION_KEY
    bronze.parent.mkdir(parents=True)
    shutil.copyfile(RASTER, bronze)
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_template(Profile.EMBEDDED, dagster_home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("GEO_PLATFORM_DATA_DIR", str(data_dir))
    return {"data_dir": data_dir, "dagster_home": dagster_home, "tmp": tmp_path}


@pytest.fixture
def ui_instance(platform_env):
    import dagster as dg

    with dg.DagsterInstance.get() as inst:
        inst.add_dynamic_partitions("rasters", [PARTITION_KEY])
        yield inst


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["data"]


_LOCATIONS_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message stack } }
} } } }"""


def _start_dagster_dev(env: dict[str, str], folder: Path) -> DagsterDev | None:
    """``dagster dev`` on a free port, ready and with its code location loaded.

    None when another process took the port between choosing and binding it.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = folder / f"dagster_dev.{port}.out", folder / f"dagster_dev.{port}.err"
    dagster = Path(sys.executable).with_name("dagster")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                str(dagster),
                "dev",
                "-m",
                "geo_platform.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            # Runs before Playwright starts any thread; see _reset_signals.
            preexec_fn=_reset_signals,  # noqa: PLW1509
            start_new_session=True,
        )
    server = DagsterDev(proc, url, out, err)
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}\n{server.logs()}")
            if "address already in use" in _tail(err, 20_000):
                _stop_process_group(proc)
                return None
            # Our webserver, not whatever else may answer on that port.
            if f"Serving dagster-webserver on {url}" in _tail(out, 100_000):
                try:
                    data = _graphql(url, _LOCATIONS_QUERY)
                except OSError:
                    data = None
                entries = (data or {}).get("workspaceOrError", {}).get("locationEntries") or []
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [
                        f"{e['name']}: {e['locationOrLoadError']['message']}"
                        f"{e['locationOrLoadError']['stack']}"
                        for e in entries
                        if e["locationOrLoadError"]["__typename"] == "PythonError"
                    ]
                    if errors:
                        pytest.fail("code location failed to load:\n" + "\n".join(errors))
                    return server
            if time.monotonic() > deadline:
                pytest.fail(f"dagster dev not ready in {SERVER_TIMEOUT_S} s\n{server.logs()}")
            time.sleep(0.5)
    except BaseException:
        _stop_process_group(proc)
        raise


@pytest.fixture
def dagster_dev(platform_env, ui_instance) -> Iterator[DagsterDev]:
    env = dict(
        os.environ,
        DAGSTER_HOME=str(platform_env["dagster_home"]),
        GEO_PLATFORM_DATA_DIR=str(platform_env["data_dir"]),
    )
    for name in ("GEO_PLATFORM_PROFILE", "GEO_PLATFORM_COLLECTIONS_FILE"):
        env.pop(name, None)  # the embedded profile, default collections file
    for _attempt in range(3):
        server = _start_dagster_dev(env, platform_env["tmp"])
        if server is not None:
            break
    else:
        pytest.fail("dagster dev found no free port in 3 attempts")
    try:
        yield server
    finally:
        _stop_process_group(server.proc)


@pytest.fixture
def page(platform_env):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def _select_asset(page, name: str) -> None:
    # The catalog's checkbox input is visually hidden behind its label.
    checkbox = page.get_by_test_id(f"checkbox-{name}")
    checkbox.wait_for(state="attached")
    page.locator("label").filter(has=checkbox).click()
    assert checkbox.is_checked(), f"could not select {name} in the catalog"


def _launch_from_catalog(page, base_url: str) -> str:
    """Catalog -> both raster assets -> Materialize selected -> partition -> Launch; run id."""
    page.goto(f"{base_url}/assets")
    for name in ("raster_validation", "cog_analysis"):
        _select_asset(page, name)
    page.get_by_role("button", name="Materialize selected").click()

    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Launch runs to materialize 2 assets").wait_for()
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_placeholder("Filter partitions").fill(PARTITION_KEY)
    page.get_by_text(PARTITION_KEY, exact=True).first.click()
    page.keyboard.press("Escape")  # closes the partition popover, not the dialog
    dialog.get_by_text("1 partition", exact=True).wait_for()

    dialog.get_by_role("button", name="Launch 1 run").click()
    # The toast "Launched run <id> [View]" links to the run page.
    page.get_by_text(re.compile(r"^Launched run ")).wait_for()
    page.get_by_role("link", name="View", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[-1]


def _wait_for_run_outcome(page) -> str:
    """The status tag of the run page once the run is over (the page updates live)."""
    done = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
    done.first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    return done.first.inner_text()


def _ui_failure(page, tmp_path: Path, server: DagsterDev, what: str) -> str:
    from playwright.sync_api import Error as PlaywrightError

    shot = tmp_path / "failure.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        text = page.inner_text("body")[-6000:]
        where = page.url
    except PlaywrightError as e:  # the browser itself may be gone
        text, where = f"(page unavailable: {e})", "?"
    return f"{what}\nURL: {where}\nscreenshot: {shot}\n--- page text ---\n{text}\n{server.logs()}"


def test_materialize_cog_analysis_partition_from_ui(
    platform_env, ui_instance, dagster_dev: DagsterDev, page
):
    import dagster as dg
    from rio_cogeo.cogeo import cog_validate

    instance = ui_instance
    tmp_path = platform_env["tmp"]
    try:
        run_id = _launch_from_catalog(page, dagster_dev.url)
        outcome = _wait_for_run_outcome(page)
    except Exception as e:
        raise AssertionError(
            _ui_failure(page, tmp_path, dagster_dev, f"UI flow failed: {e!r}")
        ) from e
    if outcome != "Success":
        pytest.fail(_ui_failure(page, tmp_path, dagster_dev, f"the UI shows the run {outcome}"))
    page.screenshot(path=str(tmp_path / "run_success.png"), full_page=True)

    run = instance.get_run_by_id(run_id)
    assert run is not None, f"run {run_id} from the UI is not in the instance"
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    assert run.tags.get("dagster/partition") == PARTITION_KEY, run.tags
    assert "dagster/sensor_name" not in run.tags, run.tags  # not the bronze_rasters run
    materializations = {
        (m.asset_key.to_user_string(), m.partition): m
        for m in (
            entry.asset_materialization
            for entry in instance.all_logs(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
        )
    }
    assert ("raster_validation", PARTITION_KEY) in materializations, materializations.keys()
    assert ("cog_analysis", PARTITION_KEY) in materializations, materializations.keys()

    cog = tier_file(platform_env["data_dir"] / "blobs", "demo/image_rgb.tif", "analysis")
    assert cog.is_file() and cog.stat().st_size > 0, f"no COG at {cog}"
    href = materializations["cog_analysis", PARTITION_KEY].metadata["href"].value
    assert Path(href) == cog.resolve(), href
    is_valid, errors, _warnings = cog_validate(str(cog), quiet=True)
    assert is_valid, errors
