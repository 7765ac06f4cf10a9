"""The web dashboard, driven in headless Chromium by Selenium (run by tests/dashboard.rs).

Environment:
  DASH_URL                      the server, e.g. http://127.0.0.1:7878
  DASH_ADMIN_TOKEN, DASH_READ_TOKEN   an admin and a read token
  DASH_WORK                     a scratch folder (downloads, files to upload)
  DASH_JOB                      a backup job of the volume's config
  DASH_DOWN_BACKEND             the backend this script takes down at the end, by
  DASH_DOWN_PID                 ... killing this process (its S3 emulator), or
  DASH_DOWN_DIR                 ... moving this folder away (a folder backend)
  DASH_SERVE_PID                the server's process (stopped for a while: a server that hangs)
  DASH_SCREENSHOTS              where to save a PNG of each page (optional)
  CLOUDRAID_TEST_CHROMEDRIVER, CLOUDRAID_TEST_CHROMIUM   the browser (nothing is downloaded)

Each check waits for what a person would see; the first that fails prints the page's
text and console, saves failure.png in DASH_WORK, and exits 1.
"""

import json
import os
import random
import signal
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["DASH_URL"].rstrip("/")
ADMIN = os.environ["DASH_ADMIN_TOKEN"]
READER = os.environ["DASH_READ_TOKEN"]
WORK = os.environ["DASH_WORK"]
JOB = os.environ["DASH_JOB"]
DOWN = os.environ["DASH_DOWN_BACKEND"]
SHOTS = os.environ.get("DASH_SCREENSHOTS")
DOWNLOADS = os.path.join(WORK, "downloads")
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------- the API, with a bearer token


def enc(path):
    return "/".join(urllib.parse.quote(p, safe="") for p in path.split("/") if p)


def call(method, path, body=None, token=ADMIN):
    req = urllib.request.Request(URL + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def put(path, data):
    st, body = call("PUT", f"/api/v1/files/{enc(path)}", data)
    assert st in (200, 201), f"PUT {path}: {st} {body[:300]!r}"


def get(path):
    return call("GET", f"/api/v1/files/{enc(path)}")


# ---------------------------------------------------------------- the browser

def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ["CLOUDRAID_TEST_CHROMIUM"]
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
              "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--lang=en-US"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {
        "download.default_directory": DOWNLOADS,
        "download.prompt_for_download": False,
        "download.directory_upgrade": True,
        "safebrowsing.enabled": False,
    })
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=os.environ["CLOUDRAID_TEST_CHROMEDRIVER"]), options=opts)
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": DOWNLOADS, "eventsEnabled": True})
    return d


def wait(d, what, cond, timeout=15):
    """Waits until cond(d) is truthy; its value. `what` names it in the failure."""
    def attempt(drv):
        try:
            return cond(drv)
        except StaleElementReferenceException:
            return False
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.1).until(attempt)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for: {what}") from None


def css(d, sel):
    return d.find_elements(By.CSS_SELECTOR, sel)


def one(d, sel):
    found = css(d, sel)
    return found[0] if found else None


def visible(d, sel):
    e = one(d, sel)
    return e if e is not None and e.is_displayed() else None


def text(d, sel):
    e = one(d, sel)
    return e.text if e is not None else ""


def shot(d, name):
    if not SHOTS:
        return
    os.makedirs(SHOTS, exist_ok=True)
    d.execute_script("document.getElementById('notice')?.replaceChildren()")  # no toast over the page
    time.sleep(0.3)  # let the last paint land
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
    log(f"screenshot {name}.png")


def full_shot(d, name):
    """A screenshot of the whole page, not only the window's height."""
    if not SHOTS:
        return
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": max(height, 800), "deviceScaleFactor": 1, "mobile": False})
    try:
        shot(d, name)
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def go(d, hash_):
    d.execute_script("location.hash = arguments[0]", hash_)


def nav(d, page):
    d.find_element(By.ID, f"nav-{page}").click()
    wait(d, f"the {page} page", lambda d: one(d, f"#page-{page}"))


def row(d, sel, name):
    for r in css(d, sel):
        if r.get_attribute("data-name") == name:
            return r
    return None


def confirm_dialog(d, button="#confirm-ok"):
    dlg = wait(d, "the confirmation dialog", lambda d: visible(d, "#confirm-dialog"))
    message = dlg.find_element(By.ID, "confirm-message").text
    dlg.find_element(By.CSS_SELECTOR, button).click()
    wait(d, "the dialog to close", staleness_of(dlg))
    return message


def notice(d, contains, timeout=20):
    return wait(d, f"a notice saying {contains!r}",
                lambda d: any(contains in n.text for n in css(d, "[data-test=notice]")), timeout)


def downloaded(name, timeout=20):
    path = os.path.join(DOWNLOADS, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and not os.path.exists(path + ".crdownload"):
            with open(path, "rb") as f:
                return f.read()
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded into {DOWNLOADS}: {os.listdir(DOWNLOADS)}")


def login(d, token):
    d.get(URL + "/#/overview")
    field = wait(d, "the login form", lambda d: visible(d, "#token"))
    field.clear()
    field.send_keys(token)
    d.find_element(By.ID, "login-submit").click()


def logout(d):
    d.find_element(By.ID, "logout").click()
    wait(d, "the login page after logging out", lambda d: visible(d, "#token"))


# ---------------------------------------------------------------- the checks

def check_login(d):
    d.get(URL + "/")
    wait(d, "the login form", lambda d: visible(d, "#token"))
    assert not visible(d, "#topbar"), "the navigation shows before login"
    shot(d, "login")
    login(d, "crd_not_a_real_token_0000000000000000000000")
    err = wait(d, "the refused-token message", lambda d: visible(d, "#login-error"))
    assert "refused" in err.text and "unknown or revoked" in err.text, err.text
    assert not visible(d, "#topbar"), "a bad token got in"
    log("a bad token is refused with a message")


def check_read_role(d):
    login(d, READER)
    wait(d, "the overview for the read token", lambda d: one(d, "#page-overview"))
    assert "viewer (read)" in text(d, "#whoami"), text(d, "#whoami")
    nav(d, "files")
    wait(d, "the root listing", lambda d: row(d, "[data-test=entry]", "docs"))
    assert not d.find_element(By.ID, "upload-input").is_enabled(), "a read token may upload"
    assert not d.find_element(By.ID, "mkdir-button").is_enabled(), "a read token may make folders"
    assert all(not b.is_enabled() for b in css(d, "[data-test=delete]")), "a read token may delete"
    nav(d, "maintenance")
    assert not d.find_element(By.ID, "start-scrub").is_enabled(), "a read token may scrub"
    logout(d)
    log("a read token sees the pages and no change buttons")


def healthy_overview(d, backends):
    wait(d, "every provider up on the overview",
         lambda d: len(css(d, "[data-test=backend][data-state=up]")) == len(backends)
         and one(d, "#health-banner[data-state=ok]"), 20)
    names = sorted(e.get_attribute("data-name") for e in css(d, "[data-test=backend]"))
    assert names == sorted(backends), names


def check_overview(d, backends):
    login(d, ADMIN)
    wait(d, "the overview", lambda d: one(d, "#page-overview"))
    assert "browser (admin)" in text(d, "#whoami"), text(d, "#whoami")
    healthy_overview(d, backends)
    banner = text(d, "#health-banner")
    assert f"All {len(backends)} providers are up" in banner and "survives" in banner, banner
    assert one(d, "#page-overview").get_attribute("data-state") == "ok"
    assert "2 + 1" in text(d, "#protection"), text(d, "#protection")
    assert "any 1 backend" in text(d, "#survives"), text(d, "#survives")
    for sel in ("[data-test=dedup-ratio]", "[data-test=compression-ratio]", "[data-test=overhead-ratio]"):
        assert text(d, sel).endswith("×"), (sel, text(d, sel))
    wait(d, "recent events", lambda d: css(d, "[data-test=event]"))
    kinds = [e.get_attribute("data-kind") for e in css(d, "[data-test=event]")]
    assert "token_created" in kinds, kinds
    assert "free of" in text(d, "#capacity"), text(d, "#capacity")
    check_cost(d)
    log(f"overview: {len(backends)} providers up, ratios, cost and events shown")


def check_cost(d):
    st, body = call("GET", "/api/v1/cost")
    assert st == 200, (st, body[:300])
    report = json.loads(body)
    monthly = report.get("monthly")
    if isinstance(monthly, (int, float)):
        want = "< $0.01" if 0 < monthly < 0.01 else f"${monthly:,.2f}"
        wait(d, f"the monthly cost {want}", lambda d: text(d, "[data-test=cost-monthly]").startswith(want + " per month"))
    else:
        # The endpoint answers without the priced report: the card says so (no
        # made-up figure, no endless "Loading").
        log(f"WARNING: GET /api/v1/cost has no monthly total (keys {sorted(report)}), not what `cloudraid cost --json` prints")
        wait(d, "the cost card saying the total is missing",
             lambda d: "no monthly total" in text(d, "[data-test=cost-missing]"))


def check_phone(d):
    # A phone's viewport (390 × 844 CSS pixels, touch, mobile layout).
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        toggle = wait(d, "the menu button at phone width", lambda d: visible(d, "#nav-toggle"))
        assert not d.find_element(By.ID, "nav-files").is_displayed(), "the navigation is not folded on a phone"
        d.execute_script("window.scrollTo(0, 0)")
        shot(d, "overview-phone")
        toggle.click()
        wait(d, "the folded navigation to open", lambda d: d.find_element(By.ID, "nav-files").is_displayed())
        assert toggle.get_attribute("aria-expanded") == "true"
        width = d.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, f"the overview is {width} px wide on a 390 px phone"
        toggle.click()
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    log("phone width: the menu folds and the overview fits")


def check_files(d, seeded):
    nav(d, "files")
    wait(d, "the root listing", lambda d: row(d, "[data-test=entry]", "docs"))
    row(d, "[data-test=entry]", "docs").find_element(By.CSS_SELECTOR, "[data-test=open]").click()
    wait(d, "the docs folder", lambda d: row(d, "[data-test=entry]", "report.bin"))
    crumbs = [c.text for c in css(d, "#breadcrumbs [data-test=crumb]")]
    assert crumbs == ["Volume", "docs"], crumbs
    r = row(d, "[data-test=entry]", "report.bin")
    size = r.find_element(By.CSS_SELECTOR, "[data-test=size]").text
    assert size == "293.0 KiB", size
    assert r.find_element(By.CSS_SELECTOR, "[data-test=redundancy]").text == "full"
    assert r.find_element(By.CSS_SELECTOR, "[data-test=mtime]").text.startswith("20")

    # Into a folder whose name needs percent-encoding, and back by the breadcrumbs.
    row(d, "[data-test=entry]", "odd #?% names").find_element(By.CSS_SELECTOR, "[data-test=open]").click()
    wait(d, "the folder with an odd name", lambda d: row(d, "[data-test=entry]", "ünïcode & co.txt"))
    css(d, "#breadcrumbs a")[-1].click()
    wait(d, "docs again by the breadcrumbs", lambda d: row(d, "[data-test=entry]", "report.bin"))

    # Downloads: plain links, the cookie authenticates them.
    for name in ("report.bin", "we ird #?.txt"):
        row(d, "[data-test=entry]", name).find_element(By.CSS_SELECTOR, "[data-test=download]").click()
        got = downloaded(name.replace("?", "_"))  # Chromium's file name for it
        assert got == seeded[f"docs/{name}"], f"{name}: the download differs ({len(got)} bytes)"
    # A file's own address (typed or bookmarked) offers its download, not a listing.
    go(d, "#/files/docs/report.bin")
    link = wait(d, "the file's page", lambda d: visible(d, "#files-is-file a[download]"))
    assert link.get_attribute("href").endswith("/api/v1/files/docs/report.bin"), link.get_attribute("href")
    d.back()
    wait(d, "docs again", lambda d: row(d, "[data-test=entry]", "report.bin"))
    log("files: browsed (breadcrumbs, odd names), downloads identical to the uploads")

    # Upload with the file picker.
    picked = os.path.join(WORK, "picked file.bin")
    data = random.Random(5).randbytes(200_000)
    with open(picked, "wb") as f:
        f.write(data)
    d.find_element(By.ID, "upload-input").send_keys(picked)
    wait(d, "the picked file in the listing", lambda d: row(d, "[data-test=entry]", "picked file.bin"), 30)
    notice(d, "Uploaded 1 file")
    st, body = get("docs/picked file.bin")
    assert st == 200 and body == data, f"the picked file on the server: {st}, {len(body)} bytes"

    # Upload by drag-and-drop: the page's drop handler, given what a drop of a file carries.
    dropped = "dropped ü file.txt"
    content = "dropped into the page\n" * 50
    d.execute_script("""
        const [name, content] = arguments;
        const dt = new DataTransfer();
        dt.items.add(new File([content], name, { type: "text/plain" }));
        const target = document.querySelector("#file-list");
        for (const type of ["dragenter", "dragover"]) {
          target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
        }
        window.__dragging = document.getElementById("page-files").classList.contains("dragging");
        target.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: dt }));
    """, dropped, content)
    assert d.execute_script("return window.__dragging"), "the page did not show it takes the drop"
    wait(d, "the dropped file in the listing", lambda d: row(d, "[data-test=entry]", dropped), 30)
    st, body = get(f"docs/{dropped}")
    assert st == 200 and body == content.encode(), f"the dropped file on the server: {st} {body[:80]!r}"
    log("files: uploads by the picker and by drag-and-drop stored byte for byte")

    # A new folder.
    d.find_element(By.ID, "mkdir-button").click()
    name = wait(d, "the folder name field", lambda d: visible(d, "#mkdir-name"))
    name.send_keys("new folder")
    d.find_element(By.ID, "mkdir-submit").click()
    r = wait(d, "the new folder", lambda d: row(d, "[data-test=entry]", "new folder"))
    assert r.get_attribute("data-kind") == "Dir"
    st, body = get("docs/new folder")
    assert st == 200 and json.loads(body)["entries"] == [], (st, body[:200])
    shot(d, "files")

    # Delete, asked first: Cancel keeps the file, Delete removes it.
    row(d, "[data-test=entry]", "picked file.bin").find_element(By.CSS_SELECTOR, "[data-test=delete]").click()
    msg = confirm_dialog(d, "#confirm-cancel")
    assert "picked file.bin" in msg, msg
    time.sleep(0.5)
    assert row(d, "[data-test=entry]", "picked file.bin"), "Cancel deleted the file"
    assert get("docs/picked file.bin")[0] == 200
    row(d, "[data-test=entry]", "picked file.bin").find_element(By.CSS_SELECTOR, "[data-test=delete]").click()
    confirm_dialog(d)
    wait(d, "the deleted file gone from the listing", lambda d: not row(d, "[data-test=entry]", "picked file.bin"))
    assert get("docs/picked file.bin")[0] == 404, "the file is still on the server"
    # A folder, recursively.
    row(d, "[data-test=entry]", "new folder").find_element(By.CSS_SELECTOR, "[data-test=delete]").click()
    assert "everything in it" in confirm_dialog(d)
    wait(d, "the deleted folder gone", lambda d: not row(d, "[data-test=entry]", "new folder"))
    log("files: new folder; delete asks, Cancel keeps, Delete removes (file and folder)")


def check_snapshots(d, seeded):
    nav(d, "snapshots")
    wait(d, "the snapshot list", lambda d: one(d, "#snapshot-list") or one(d, "#snapshots-empty"))
    before = len(css(d, "[data-test=snapshot]"))
    d.find_element(By.ID, "snapshot-tags").send_keys("from-browser")
    d.find_element(By.ID, "snapshot-take").click()
    notice(d, "taken")
    wait(d, "the new snapshot in the list", lambda d: len(css(d, "[data-test=snapshot]")) == before + 1)
    first = css(d, "[data-test=snapshot]")[0]
    assert "from-browser" in first.text, f"the newest snapshot is not first: {first.text}"
    snap = first.get_attribute("data-id")
    shot(d, "snapshots")
    log(f"snapshots: {snap} taken and listed first")

    # Browse it and download a file from it.
    first.find_element(By.CSS_SELECTOR, "[data-test=browse]").click()
    wait(d, "the snapshot's root", lambda d: row(d, "[data-test=snapshot-entry]", "docs"))
    row(d, "[data-test=snapshot-entry]", "docs").find_element(By.CSS_SELECTOR, "[data-test=open]").click()
    wait(d, "the snapshot's docs", lambda d: row(d, "[data-test=snapshot-entry]", "notes.txt"))
    row(d, "[data-test=snapshot-entry]", "notes.txt").find_element(By.CSS_SELECTOR, "[data-test=download]").click()
    assert downloaded("notes.txt") == seeded["docs/notes.txt"], "the snapshot's notes.txt differs"

    # Restore a file deleted since: back in place.
    assert call("DELETE", "/api/v1/files/docs/notes.txt")[0] == 200
    row(d, "[data-test=snapshot-entry]", "notes.txt").find_element(By.CSS_SELECTOR, "[data-test=restore]").click()
    assert "/docs/notes.txt" in confirm_dialog(d)
    notice(d, "Restored /docs/notes.txt", 60)
    st, body = get("docs/notes.txt")
    assert st == 200 and body == seeded["docs/notes.txt"], f"notes.txt after the restore: {st} {body[:80]!r}"

    # Restore over a changed file: the page asks before overwriting.
    put("docs/report.bin", b"changed since the snapshot")
    row(d, "[data-test=snapshot-entry]", "report.bin").find_element(By.CSS_SELECTOR, "[data-test=restore]").click()
    confirm_dialog(d)
    msg = confirm_dialog(d, "[data-value=overwrite]")
    assert "already has /docs/report.bin" in msg, msg
    notice(d, "Restored /docs/report.bin", 60)
    st, body = get("docs/report.bin")
    assert st == 200 and body == seeded["docs/report.bin"], "report.bin was not overwritten by the snapshot's"
    log("snapshots: browsed, downloaded from, restored a deleted file and (asked) overwrote a changed one")


def check_jobs(d):
    nav(d, "jobs")
    card = wait(d, f"the job {JOB}", lambda d: one(d, f"[data-test=job][data-job='{JOB}']"))
    assert "0 3 * * *" in card.text, card.text
    runs_before = len(css(d, f"[data-test=run-row][data-job='{JOB}']"))
    card.find_element(By.CSS_SELECTOR, "[data-test=run]").click()
    # The job's before hook sleeps 2 s: the page shows it running meanwhile.
    wait(d, "the job shown running",
         lambda d: one(d, f"[data-test=job][data-job='{JOB}'][data-state=running]")
         and "Running" in text(d, f"[data-test=job][data-job='{JOB}'] [data-test=run]"), 5)
    assert not one(d, f"[data-test=job][data-job='{JOB}'] [data-test=run]").is_enabled()
    notice(d, f"Job {JOB}: success", 90)
    wait(d, "the run in the history",
         lambda d: len(css(d, f"[data-test=run-row][data-job='{JOB}']")) == runs_before + 1)
    newest = css(d, "[data-test=run-row]")[0]
    assert newest.get_attribute("data-trigger") == "api" and newest.get_attribute("data-result") == "success", newest.text
    wait(d, "the job idle again", lambda d: one(d, f"[data-test=job][data-job='{JOB}'][data-state=idle]"))
    assert text(d, f"[data-test=job][data-job='{JOB}'] [data-test=result]") == "success"
    assert text(d, f"[data-test=job][data-job='{JOB}'] [data-test=next-run]") not in ("", "—")
    shot(d, "jobs")
    log(f"jobs: {JOB} ran from the page (shown running, then success in the history)")


def run_task(d, button):
    d.find_element(By.ID, button).click()
    wait(d, "the task's page", lambda d: "#/maintenance/" in d.current_url)
    wait(d, "the task to finish", lambda d: one(d, "#task[data-state=done]") or one(d, "#task[data-state=failed]"), 90)
    task = one(d, "#task")
    assert task.get_attribute("data-state") == "done", task.text
    return task.get_attribute("data-task-id")


def check_maintenance(d):
    nav(d, "maintenance")
    tid = run_task(d, "start-scrub")
    ok = int(text(d, "[data-test=count-ok]").replace(",", ""))
    assert ok > 0, text(d, "#task")
    for k in ("missing", "corrupt", "unreachable"):
        assert text(d, f"[data-test=count-{k}]") == "0", (k, text(d, "#task"))
    assert text(d, "[data-test=task-verdict]").startswith("Clean"), text(d, "[data-test=task-verdict]")
    checked, total = text(d, "[data-test=count-checked]").split(" / ")
    assert checked == total and int(total) > 0, text(d, "[data-test=count-checked]")
    assert text(d, "#task-state") == "done"
    bar = one(d, "#task-progress")
    assert bar.get_attribute("value") == bar.get_attribute("max"), (bar.get_attribute("value"), bar.get_attribute("max"))
    wait(d, "the scrub in the recent tasks", lambda d: one(d, f"[data-test=task][data-id='{tid}'][data-state=done]"))
    fetched = d.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert any(u.endswith(f"/api/v1/tasks/{tid}/events") for u in fetched), f"no event stream for {tid}: {fetched}"
    assert not any(u.endswith(f"/api/v1/tasks/{tid}") for u in fetched), "the page polled instead of following the stream"
    shot(d, "maintenance")
    log(f"maintenance: scrub {tid} done, {ok} shards ok, none missing or corrupt")
    rid = run_task(d, "start-repair")
    assert "chunks repaired" in text(d, "#task"), text(d, "#task")
    wait(d, "both tasks listed", lambda d: one(d, f"[data-test=task][data-id='{rid}']") and one(d, f"[data-test=task][data-id='{tid}']"))
    log(f"maintenance: repair {rid} done")


def check_outage(d, backends):
    nav(d, "overview")
    healthy_overview(d, backends)
    wait(d, "the latest events", lambda d: one(d, "[data-test=event][data-kind=repair]"))
    full_shot(d, "overview")  # (the README's: the volume after the other pages' work)
    if "DASH_DOWN_PID" in os.environ:
        os.kill(int(os.environ["DASH_DOWN_PID"]), signal.SIGKILL)
        how = "its S3 emulator killed"
    else:
        src = os.environ["DASH_DOWN_DIR"]
        os.rename(src, src + ".away")
        how = "its folder moved away"
    started = time.monotonic()
    wait(d, f"the overview to turn amber naming {DOWN}",
         lambda d: one(d, "#health-banner[data-state=warn]")
         and DOWN in [e.text for e in css(d, "[data-test=down-name]")], 30)
    took = time.monotonic() - started
    assert one(d, "#page-overview").get_attribute("data-state") == "warn"
    banner = text(d, "#health-banner")
    assert banner.startswith("Provider down: ") and DOWN in banner, banner
    tile = row(d, "[data-test=backend]", DOWN)
    assert tile.get_attribute("data-state") == "down", tile.text
    assert [e.get_attribute("data-name") for e in css(d, "[data-test=backend][data-state=down]")] == [DOWN]
    assert d.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(255, 248, 230)", \
        "the page is not amber"
    # Never an endless spinner: the figures are there, and they keep coming.
    assert not one(d, "#overview-loading") and not visible(d, ".spinner"), "a spinner is left on the overview"
    assert not visible(d, "#overview-error"), text(d, "#overview-error")
    stamp = text(d, "#overview-updated")
    wait(d, "the overview to refresh itself", lambda d: text(d, "#overview-updated").split(" (")[0] != stamp.split(" (")[0], 20)
    assert one(d, "#health-banner[data-state=warn]"), "the banner did not stay amber"
    shot(d, "overview-down")
    log(f"outage: {DOWN} ({how}) shown down on an amber overview after {took:.1f} s")


def check_stalled_server(d):
    # The server itself stops answering (stopped, not gone: connections hang).
    # The overview says so within its time limit, keeps the last figures, and
    # offers a retry; when the server answers again, the retry clears it.
    pid = int(os.environ["DASH_SERVE_PID"])
    os.kill(pid, signal.SIGSTOP)
    try:
        err = wait(d, "the overview's error state while the server hangs",
                   lambda d: visible(d, "#overview-error"), 25)
        assert "did not answer within 8 s" in err.text, err.text
        assert "stale" in one(d, "#page-overview").get_attribute("class")
        assert not visible(d, ".spinner") and not one(d, "#overview-loading"), "a spinner while the server hangs"
        retry = d.find_element(By.ID, "overview-retry")
        assert retry.is_displayed()
    finally:
        os.kill(pid, signal.SIGCONT)
    wait(d, "the retry button usable again", lambda d: d.find_element(By.ID, "overview-retry").is_enabled(), 20)
    d.find_element(By.ID, "overview-retry").click()
    wait(d, "the error gone once the server answers", lambda d: not visible(d, "#overview-error"), 20)
    assert "stale" not in one(d, "#page-overview").get_attribute("class")
    log("a server that stops answering: an error with a retry within 8 s, cleared by the retry")


def check_session_end(d):
    # The cookie gone (a revoked token, a restarted browser): the next call gets
    # 401 and the page goes back to the login form, saying why.
    d.delete_all_cookies()
    d.find_element(By.ID, "nav-files").click()
    msg = wait(d, "the login form after the session ended", lambda d: visible(d, "#login-error"), 20)
    assert "session has ended" in msg.text, msg.text
    # Logging in again goes back to the page the user was on.
    d.find_element(By.ID, "token").send_keys(ADMIN)
    d.find_element(By.ID, "login-submit").click()
    wait(d, "the files page after logging in again", lambda d: one(d, "#page-files"))
    logout(d)
    go(d, "#/jobs")
    time.sleep(0.5)
    assert visible(d, "#token") and not one(d, "#page-jobs"), "a page shows after logging out"
    log("a lost session goes back to the login page with its reason; logout works")


def main():
    os.makedirs(DOWNLOADS, exist_ok=True)
    st, body = call("GET", "/api/v1/status")
    assert st == 200, (st, body[:300])
    backends = [b["name"] for b in json.loads(body)["backends"]]
    assert DOWN in backends, (DOWN, backends)
    rnd = random.Random(7)
    seeded = {
        "docs/report.bin": rnd.randbytes(300_000),
        "docs/notes.txt": b"remember the milk\n" * 20,
        "docs/we ird #?.txt": "spaces, a hash, a question mark\n".encode(),
        "docs/odd #?% names/ünïcode & co.txt": "ünïcode\n".encode(),
    }
    for path, data in seeded.items():
        put(path, data)
    log(f"seeded {len(seeded)} files; backends {backends}")

    d = browser()
    try:
        check_login(d)
        check_read_role(d)
        check_overview(d, backends)
        check_phone(d)
        check_files(d, seeded)
        check_snapshots(d, seeded)
        check_jobs(d)
        check_maintenance(d)
        check_outage(d, backends)
        check_stalled_server(d)
        check_session_end(d)
        problems = [m for m in d.get_log("browser") if m["level"] == "SEVERE"
                    and "Failed to load resource" not in m["message"]]
        assert not problems, f"errors in the browser's console: {problems}"
    except BaseException:
        traceback.print_exc()
        try:
            d.save_screenshot(os.path.join(WORK, "failure.png"))
            print(f"--- page {d.current_url} (screenshot {os.path.join(WORK, 'failure.png')}):")
            print(d.find_element(By.TAG_NAME, "body").text[:4000])
            print("--- console:")
            for m in d.get_log("browser"):
                print(m)
        except Exception as e:  # the browser itself may be gone
            print(f"(no page to show: {e})")
        sys.exit(1)
    finally:
        d.quit()
    print(f"dashboard: every check passed in {time.monotonic() - T0:.1f} s")


if __name__ == "__main__":
    main()
