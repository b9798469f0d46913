#!/usr/bin/env python3
"""The web console in a real browser: headless Chromium driven by Selenium against `ferry serve`.

Usage: python3 Tests/system/console_test.py --ferry PATH [--screenshots DIR] [--keep]

Cases:
  reload     a 50 MiB file through the uploader with the browser's upload throttled (DevTools
             network conditions); the page is reloaded mid-upload, the same file chosen again:
             the upload resumes from the server's offset (not from 0), completes, and the stored
             file's SHA-256 equals the file's.
  several    three files chosen at once all complete, each stored byte for byte.
  instant    a file, then a copy of it under another name: the copy is stored instantly (Web Crypto
             hashes and answers the challenge; none of its bytes are sent) and byte for byte.
  dashboard  admin login; the dashboard shows the uploads (created count, the by-network and
             by-scenario tables, charts); a terminated upload appears among the failed ones and
             its drill-down shows its request timeline.
Screenshots of the uploader (during and after) and the dashboard are saved in --screenshots (default: a temp dir;
the ones in docs/ come from `--screenshots docs`). Needs chromium, chromium-driver (Debian) and
selenium (PyPI); scripts/test.sh installs them.
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from support import MiB, Procs, check, free_port, random_file, results, sha256  # noqa: E402

ADMIN = "console-admin-" + os.urandom(6).hex()


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def stored_sha256(port, url):
    path = "/" + url.split("/", 3)[3]
    status, _, body = request(port, "GET", path, {"Tus-Resumable": "1.0.0"})
    return status, hashlib.sha256(body).hexdigest()


def make_file(directory, name, size):
    path = os.path.join(directory, name)
    random_file(path, size)
    return path


def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--disable-gpu"):
        options.add_argument(argument)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


def wait(driver, condition, timeout, what):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = condition(driver)
            if last:
                return last
        except Exception as e:  # the page may be mid-reload
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{what} (last: {last!r})")


def row(driver, name):
    from selenium.webdriver.common.by import By
    rows = driver.find_elements(By.CSS_SELECTOR, f'#uploads tbody tr[data-name="{name}"]')
    return rows[-1] if rows else None


def choose(driver, *paths):
    from selenium.webdriver.common.by import By
    driver.find_element(By.ID, "files").send_keys("\n".join(paths))


def case_reload(driver, port, tmp, shots):
    print("== reload: 50 MiB, throttled, page reloaded mid-upload, same file chosen again", flush=True)
    path = make_file(tmp, "big-50MiB.bin", 50 * MiB)
    name = os.path.basename(path)
    driver.get(f"http://127.0.0.1:{port}/console")
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#scenario option').length") > 0, 20, "scenarios listed")
    # About 5 MiB/s up: the upload takes ~10 s, time enough to reload in the middle.
    driver.set_network_conditions(offline=False, latency=20, download_throughput=64 * MiB, upload_throughput=5 * MiB)
    choose(driver, path)
    progress = wait(driver, lambda d: (r := row(d, name)) is not None and int(r.get_attribute("data-offset") or 0) >= 8 * MiB
                    and int(r.get_attribute("data-offset")), 90, "8 MiB acknowledged before the reload")
    check(progress >= 8 * MiB, f"reload: {progress / MiB:.1f} MiB acknowledged when the page is reloaded")
    driver.save_screenshot(os.path.join(shots, "console-uploading.png"))
    driver.refresh()
    unfinished = wait(driver, lambda d: d.find_element("id", "unfinished").text, 20, "the unfinished upload is listed")
    check(name in unfinished, "reload: after the reload the page lists the unfinished upload", unfinished)
    choose(driver, path)
    done = wait(driver, lambda d: (r := row(d, name)) is not None and r.get_attribute("data-state") == "complete" and r, 240,
                "the resumed upload completes")
    resumed = int(done.get_attribute("data-resumed-from") or 0)
    check(resumed >= progress - 4 * MiB and resumed > 0,
          f"reload: the upload resumed from the server's offset ({resumed / MiB:.1f} MiB), not from 0")
    status, digest = stored_sha256(port, done.get_attribute("data-url"))
    check(status == 200 and digest == sha256(path), "reload: the stored 50 MiB file's SHA-256 equals the file's")
    driver.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
    driver.save_screenshot(os.path.join(shots, "console-uploader.png"))


def case_several(driver, port, tmp, shots):
    print("== several: three files chosen at once", flush=True)
    paths = [make_file(tmp, f"part-{i}.bin", size) for i, size in enumerate((2 * MiB, 3 * MiB + 17, 5 * MiB))]
    choose(driver, *paths)
    for path in paths:
        name = os.path.basename(path)
        done = wait(driver, lambda d: (r := row(d, name)) is not None and r.get_attribute("data-state") == "complete" and r, 120,
                    f"{name} completes")
        status, digest = stored_sha256(port, done.get_attribute("data-url"))
        check(status == 200 and digest == sha256(path), f"several: {name} is stored byte for byte")
    driver.save_screenshot(os.path.join(shots, "console-uploader.png"))


def case_instant(driver, port, tmp, shots):
    print("== instant: a file, then a copy of it under another name", flush=True)
    original = make_file(tmp, "voice-original.bin", 3 * MiB + 5)
    copy = os.path.join(tmp, "voice-forward.bin")
    shutil.copyfile(original, copy)
    choose(driver, original)
    first = wait(driver, lambda d: (r := row(d, "voice-original.bin")) is not None and r.get_attribute("data-state") == "complete" and r, 120,
                 "the original completes")
    check(first.get_attribute("data-instant") is None, "instant: the first upload of the content sends its bytes")
    choose(driver, copy)
    done = wait(driver, lambda d: (r := row(d, "voice-forward.bin")) is not None and r.get_attribute("data-state") == "complete" and r, 60,
                "the copy completes")
    check(done.get_attribute("data-instant") == "true" and "stored instantly" in done.text,
          "instant: the copy is stored instantly", done.text)
    status, digest = stored_sha256(port, done.get_attribute("data-url"))
    check(status == 200 and digest == sha256(original) and done.get_attribute("data-url") != first.get_attribute("data-url"),
          "instant: the copy is an upload of its own, stored byte for byte")


def case_dashboard(driver, port, tmp, shots):
    print("== dashboard: login, figures, tables, a failed upload's timeline", flush=True)
    from selenium.webdriver.common.by import By
    # A terminated upload for the "failed" table: created, 1 KiB sent, deleted.
    status, headers, _ = request(port, "POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "4096", "Ferry-Network": "3g"})
    url = headers.get("location", "")
    path = "/" + url.split("/", 3)[3] if url else ""
    request(port, "PATCH", path, {"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, os.urandom(1024))
    request(port, "DELETE", path, {"Tus-Resumable": "1.0.0"})
    time.sleep(1.5)  # the statistics are written in batches
    driver.get(f"http://127.0.0.1:{port}/console")
    driver.find_element(By.ID, "tab-dashboard").click()
    driver.find_element(By.ID, "admin-token").send_keys("wrong-token")
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    refused = wait(driver, lambda d: d.find_element(By.ID, "login-error").text, 20, "a wrong token is refused")
    check("refused" in refused, "dashboard: a wrong admin token is refused", refused)
    field = driver.find_element(By.ID, "admin-token")
    field.clear()
    field.send_keys(ADMIN)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    created = wait(driver, lambda d: d.find_element(By.ID, "created").is_displayed() and int(d.find_element(By.ID, "created").text or 0), 30,
                   "the dashboard shows the uploads")
    check(created >= 7, f"dashboard: {created} uploads created in the window (the console's 6 and the deleted one)")
    networks = driver.find_element(By.ID, "by-network").text
    check("3g" in networks, "dashboard: the by-network table lists the networks", networks[:300])
    check(driver.find_elements(By.CSS_SELECTOR, "#chart-success svg") and driver.find_elements(By.CSS_SELECTOR, "#chart-scenarios svg"),
          "dashboard: the charts are drawn (SVG)")
    troubled = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#troubled tr[data-id="{path.split("/")[-1]}"]'), 20,
                    "the terminated upload is listed among the failed ones")
    driver.save_screenshot(os.path.join(shots, "console-dashboard.png"))
    troubled[0].click()
    detail = wait(driver, lambda d: d.find_element(By.ID, "detail").text, 20, "the drill-down opens")
    check("PATCH" in detail and "terminated" in detail, "dashboard: the drill-down shows the upload's request timeline", detail[:300])
    driver.save_screenshot(os.path.join(shots, "console-detail.png"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--screenshots", default=None, help="where to save the screenshots (default: a temp dir)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ferry-console-")
    shots = os.path.abspath(args.screenshots or os.path.join(tmp, "screenshots"))
    os.makedirs(shots, exist_ok=True)
    procs = Procs()
    driver = None
    started = time.monotonic()
    try:
        config = os.path.join(tmp, "ferry.conf")
        with open(config, "w") as f:
            f.write(f'[server]\nadmin-token = "{ADMIN}"\n')
        port = free_port()
        log = open(os.path.join(tmp, "ferry.log"), "wb")
        procs.spawn([os.path.abspath(args.ferry), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                     os.path.join(tmp, "data"), "--config", config, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                if request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        driver = start_browser()
        for case in (case_reload, case_several, case_instant, case_dashboard):
            try:
                case(driver, port, tmp, shots)
            except Exception as e:
                check(False, f"{case.__name__}: {type(e).__name__}: {e}")
            errors = [entry["message"] for entry in driver.get_log("browser")
                      if entry.get("level") == "SEVERE" and entry.get("source") in ("javascript", "security")]
            check(not errors, f"{case.__name__}: no script errors or policy violations in the browser's log", "; ".join(errors)[:600])
        print(f"      screenshots in {shots}", flush=True)
    finally:
        if driver is not None:
            driver.quit()
        procs.kill_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True) if not shots.startswith(tmp) or args.screenshots else None
    print(f"({time.monotonic() - started:.0f} s)")
    print(f"console test: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
