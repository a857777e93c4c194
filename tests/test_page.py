"""explain's page: its activations decoded as the page's script decodes them, by a plain loop; and
the page in a real headless browser (Debian's chromium, driven by Selenium through the system
chromedriver, so nothing is downloaded): no console errors, no network request, one element per
character, the hover panel shows the TSV's top-5, choosing a unit recolours the text with its
values, and the screenshot is not blank. Run as a script, it writes the README's screenshot:
    python tests/test_page.py report.html explain.png [phone|desktop]
"""
import base64
import io
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from charrnn import checkpoint, explain, page

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SIZES = {"phone": (390, 844), "desktop": (1280, 900)}
TEXT = 'He said "hello (world)".\nShe said "hello world!"\n\thello, world: (hello) [world]\n' * 4 + "hello ~world"



def test_reading_order_sorts_by_the_characters_read_most_recent_first():
    ids = np.random.default_rng(0).integers(0, 3, size=200)  # 3 characters: long ties, broken by position

    def read_back(j):
        return [ids[j - d] if j >= d else -1 for d in range(page.CONTEXT)], j

    assert page.reading_order(ids).tolist() == sorted(range(len(ids)), key=read_back)


def test_quantised_activations_decode_within_half_a_level():
    """The page script's decode, as a plain loop: each unit's steps summed (mod LEVELS) in the
    reading order give its levels, and a = lo + level * (hi - lo) / (LEVELS - 1)."""
    rng = np.random.default_rng(1)
    acts = np.tanh(rng.normal(size=(40, 5)) * [0.1, 1, 3, 1, 1]).astype(np.float32)
    acts[:, 3] = 0.25  # a constant unit
    order = rng.permutation(40)
    q = page.quantise(acts, order)
    steps = np.frombuffer(zlib.decompress(base64.b64decode(q["data"])), dtype=np.uint8)
    decoded = np.zeros_like(acts, dtype=np.float64)
    for u in range(5):
        level = 0
        for r in range(40):
            level = (level + steps[u * 40 + r]) % page.LEVELS
            decoded[order[r], u] = q["lo"][u] + level * (q["hi"][u] - q["lo"][u]) / (page.LEVELS - 1)
    half = (np.array(q["hi"]) - np.array(q["lo"])) / (page.LEVELS - 1) / 2
    assert np.all(np.abs(decoded - acts) <= half + 1e-6)
    np.testing.assert_allclose(q["scale"], np.abs(acts).max(axis=0), rtol=1e-5)


needs_browser = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                   reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


def browser(size):
    """A headless chromium of `size` (width, height) that logs console messages and network events."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": size[0] < 700})
    return driver


def wait_for(driver, condition, what, timeout=20):
    """Poll the page until the script `condition` is true; return the seconds it took."""
    start = time.monotonic()
    while not driver.execute_script(f"return {condition}"):
        assert time.monotonic() < start + timeout, f"the page never {what}"
        time.sleep(0.02)
    return time.monotonic() - start


def open_page(driver, path):
    """Load the page; return ms from navigation start until it says it is interactive."""
    driver.get(path.resolve().as_uri())
    wait_for(driver, "document.body && document.body.dataset.ready === '1'", "became ready")
    return driver.execute_script("return window.explainReady")


def wait_for_paint(driver):
    """Wait while the text is busy (the unit view decoding a layer); return the seconds waited."""
    return wait_for(driver, "document.getElementById('text').getAttribute('aria-busy') === 'false'", "painted the unit")


def screenshot(page, png, size=SIZES["desktop"]):
    """Write a screenshot of `page` at `size`, hovering a character: the README's picture."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver = browser(size)
    try:
        open_page(driver, Path(page))
        ActionChains(driver).move_to_element(driver.find_element("id", "c40")).perform()
        Path(png).write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def made(tmp_path_factory, charrnn_cmd):
    """A tiny GRU trained by a real `charrnn train`, and `charrnn explain` processes' page and TSV of TEXT."""
    out = tmp_path_factory.mktemp("page")
    (out / "corpus.txt").write_text(TEXT * 10, encoding="utf-8")
    ckpt = out / "run" / "latest.npz"
    subprocess.run([*charrnn_cmd, "train", str(out / "corpus.txt"), "--cell", "gru", "--hidden", "16", "--layers", "2",
                    "--seq-len", "16", "--batch-size", "4", "--max-steps", "30", "--val-frac", "0",
                    "--out", str(out / "run"), "--quiet"], check=True)
    (out / "text.txt").write_text(TEXT, encoding="utf-8")
    base = [*charrnn_cmd, "explain", str(out / "text.txt"), "--checkpoint", str(ckpt), "--quiet"]
    subprocess.run([*base, "-o", str(out / "page.html")], check=True)
    tsv = subprocess.run([*base, "--format", "tsv"], check=True, capture_output=True, text=True).stdout
    return out / "page.html", [line.split("\t") for line in tsv.splitlines()[1:]], ckpt


def unescape(field):
    return {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}.get(field, field)


def requests(driver):
    """URLs the page asked for (DevTools Network.requestWillBeSent events)."""
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def background(driver, k):
    return driver.execute_script(f"return getComputedStyle(document.getElementById('c{k}')).backgroundColor")


def rgb(css):
    return np.array([float(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3]])


@needs_browser
@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
def test_the_page_in_a_browser(made, size, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from PIL import Image

    page, rows, ckpt = made
    driver = browser(SIZES[size])
    try:
        ready = open_page(driver, page)
        print(f"\n{size}: interactive {ready:.0f} ms after navigation start")
        assert [log for log in driver.get_log("browser") if log["level"] in ("SEVERE", "WARNING")] == []
        assert requests(driver) == [page.resolve().as_uri()]  # the page itself, nothing else
        assert driver.execute_script("return document.querySelectorAll('#text > span').length") == len(TEXT)
        shown = driver.execute_script("return document.getElementById('text').textContent")
        assert shown == TEXT.replace("\n", "↵\n")
        for k in (5, 30, len(TEXT) - 1):
            char = driver.find_element("id", f"c{k}")
            # in the middle of the window, as a reader scrolls it: not under the phone layout's fixed panel
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", char)
            ActionChains(driver).move_to_element(char).perform()
            shown = driver.execute_script("return [...document.querySelectorAll('#panel li')].map("
                                          "li => [li.dataset.char, +li.dataset.p])")
            want = rows[k][4:14]
            assert [c for c, _ in shown] == [unescape(c) for c in want[0::2]], k
            np.testing.assert_allclose([p for _, p in shown], [float(p) for p in want[1::2]], atol=1e-4)
        check_unit_view(driver, ckpt)
        png = driver.get_screenshot_as_png()
        (tmp_path / f"{size}.png").write_bytes(png)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 20  # not blank: text, colours, the panel
        assert [log for log in driver.get_log("browser") if log["level"] in ("SEVERE", "WARNING")] == []
    finally:
        driver.quit()


def check_unit_view(driver, ckpt):
    """Choose layer 2, unit 3 with the controls: each character's colour follows that unit's h
    (red for positive, blue for negative, deeper the larger), as explain computes it."""
    from selenium.webdriver.support.ui import Select

    before = background(driver, 10)
    Select(driver.find_element("id", "layer")).select_by_value("1")
    unit = driver.find_element("id", "unit")
    unit.clear()
    unit.send_keys("3")
    assert driver.find_element("id", "view").get_attribute("value") == "unit"
    wait_for_paint(driver)
    h = explain.explain_checkpoint(*checkpoint.load(ckpt), TEXT).layers[1]["h"][:, 3]
    colours = np.array([rgb(background(driver, k)) for k in range(len(TEXT))])
    redness = (colours[:, 0] - colours[:, 2]) / 255  # diverging scale: red minus blue follows the value
    assert not np.allclose(redness, redness[0]) and background(driver, 10) != before
    assert np.corrcoef(redness, h)[0, 1] > 0.97
    assert np.all(np.sign(redness[np.abs(h) > 0.2 * np.abs(h).max()]) == np.sign(h[np.abs(h) > 0.2 * np.abs(h).max()]))


if __name__ == "__main__":
    screenshot(sys.argv[1], sys.argv[2], SIZES[sys.argv[3]] if len(sys.argv) > 3 else SIZES["desktop"])
