"""The studio in a real browser: ``maskgit serve`` on 127.0.0.1 with the shipped fashion-mnist model,
driven by Playwright in Debian's headless Chromium.

Each tab is used as a visitor would (upload, paint, click), the results are downloaded from the page,
and their pixels are checked against the input: changed inside the box / mask / new border, identical
outside it. Generation is checked against the library with the seed the page shows. The screenshots
of the README (docs/studio-*.png) are written here. Every request the page makes must go to the
studio's own address.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio

import io
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The README's screenshots are rewritten only when asked (MASKGIT_UPDATE_SCREENSHOTS=1), so that a
# test run leaves the checkout as it was; otherwise they go to a temporary folder.
DOCS = (Path(__file__).resolve().parents[1] / "docs" if os.environ.get("MASKGIT_UPDATE_SCREENSHOTS") == "1"
        else Path(tempfile.mkdtemp(prefix="maskgit-screenshots-")))

pytestmark = pytest.mark.slow
pytest.importorskip("gradio", reason="the studio needs the web extra: pip install -e '.[web]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright: pip install playwright")
if not Path(CHROMIUM).exists():
    pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM}: apt-get install chromium",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``maskgit serve`` in a subprocess, with an empty working folder, home and temp folder."""
    root = tmp_path_factory.mktemp("studio")
    cwd, home, temp = root / "cwd", root / "home", root / "tmp"
    for folder in (cwd, home, temp):
        folder.mkdir()
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HOME": str(home), "TMPDIR": str(temp),
           "OMP_NUM_THREADS": "1"}
    log = open(root / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "maskgit.cli", "serve", "--port", str(port), "--device", "cpu"],
                               cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the studio did not start:\n{(root / 'server.log').read_text()}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()
    output = (root / "server.log").read_text()
    # Gradio logs the user errors it showed in the page. Any other traceback through the studio's
    # code is a bug (the server may also log a refused oversized upload that the browser dropped).
    for block in output.split("Traceback (most recent call last):")[1:]:
        assert "maskgit/web/" not in block or "gradio.exceptions.Error: " in block, block
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == [], "the studio wrote outside its temporary folder"
    # Its temporary folder (uploads, results, Gradio's files) is gone; torch may keep a cache beside it.
    assert [p.name for p in temp.iterdir() if not p.name.startswith("torchinductor_")] == []


@pytest.fixture(scope="module")
def page(server):
    hosts: set[str] = set()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
        page.goto(server)
        page.wait_for_selector("#generate-run")
        yield page
        browser.close()
    assert hosts == {server.split("/")[2]}, f"the page reached other hosts: {hosts}"


# -- helpers --------------------------------------------------------------------------------------


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _run(page, mode: str, count: int) -> dict[str, np.ndarray]:
    """Click the tab's button, wait for ``count`` results, and download every file it offers."""
    links = f"#{mode}-files a[href]"
    before = page.locator(links).evaluate_all("links => links.map(a => a.href)")
    page.click(f"#{mode}-run")
    # Gradio names served files by their content: a run with new images has new links.
    page.wait_for_function(
        """([sel, n, before]) => {
            const hrefs = [...document.querySelectorAll(sel)].map(a => a.href);
            return hrefs.length >= n && hrefs.join() !== before.join();
        }""",
        arg=[links, count, before], timeout=120_000,
    )
    assert page.locator(f"#{mode}-gallery img").count() >= count
    page.wait_for_function("sel => document.querySelector(sel)?.naturalWidth > 0", arg=f"#{mode}-strip img")
    files = {}
    for link in page.locator(f"#{mode}-files a[href]").all():
        href = link.get_attribute("href")
        name = href.rsplit("/", 1)[-1].split("?")[0]
        body = page.request.get(href).body()
        files[name] = body if name.endswith(".json") else np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    return files


def _settings_text(page, mode: str) -> str:
    return page.locator(f"#{mode}-settings").inner_text()


def _upload(page, mode: str, path: Path, what: str = "image") -> None:
    clear = page.locator(f"#{mode}-{what} button[aria-label=Clear]")
    if clear.count():  # a file is already there: remove it to get the drop zone back
        clear.first.click()
    page.locator(f"#{mode}-{what} input[type=file]").set_input_files(str(path))


def _expect_error(page, text: str) -> None:
    """A user error shows as a message in the page (a toast), not a traceback."""
    toast = page.locator(".toast-body", has_text=text)
    toast.first.wait_for(timeout=30_000)
    assert "Traceback" not in page.content()
    page.locator(".toast-close").first.click()


def _paint(page, mode: str, rows: tuple[float, float], columns: tuple[float, float]) -> None:
    """Scribble over a rectangle of the editor, in fractions of the canvas's short side from its
    centre (where the image is centred)."""
    box = page.locator(f"#{mode}-editor canvas").first.bounding_box()
    side = min(box["width"], box["height"])
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    y0, y1 = (centre_y + f * side for f in rows)
    x0, x1 = (centre_x + f * side for f in columns)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for y in np.linspace(y0, y1, 6):
        page.mouse.move(x0, y, steps=4)
        page.mouse.move(x1, y, steps=4)
    page.mouse.up()


def _screenshot(page, name: str) -> None:
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=DOCS / name, full_page=True)
    # Palette PNGs keep the README's images small.
    picture = Image.open(DOCS / name).convert("RGB")
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(DOCS / name, optimize=True)


# -- the test -------------------------------------------------------------------------------------


def test_studio_tabs_in_chromium(page, tmp_path):
    from maskgit.data.transforms import eval_transform, resize_crop_mask
    from maskgit.imageio import to_uint8
    from maskgit.pipeline import MaskGIT

    pipeline = MaskGIT.from_pretrained("fashion-mnist")

    # Generate: 8 images of class 0 with seed 0, the defaults.
    files = _run(page, "generate", 8)
    generated = [files[f"generate_{k:04d}.png"] for k in range(8)]
    assert all(image.shape == (32, 32, 3) for image in generated)
    assert len({image.tobytes() for image in generated}) == 8  # eight different images
    settings = _settings_text(page, "generate")
    assert "maskgit generate --model fashion-mnist --class 0 --num 8 --seed 0" in settings
    # The page shows what reproduces its images: the library makes the same ones.
    expected = pipeline.generate([0] * 8, seed=0)
    for k in range(8):
        np.testing.assert_array_equal(generated[k], to_uint8(expected[k]))
    _screenshot(page, "studio-generate.png")

    # An upload that is not square and not the model's size: 96x64, fitted to 32x32.
    upload = Image.fromarray(generated[1]).resize((64, 64), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (96, 64), "white")
    canvas.paste(upload, (16, 0))
    canvas.save(tmp_path / "coat.png")
    fitted = to_uint8(eval_transform(32)(canvas))

    # Edit: paint a box over the middle of the image.
    _open_tab(page, "Edit")
    _upload(page, "edit", tmp_path / "coat.png")
    page.locator("#edit-note", has_text="96x64 resized (short side to 32) and centre-cropped to 32x32").wait_for()
    page.locator("#edit-editor canvas").first.wait_for()
    _paint(page, "edit", rows=(-0.1, 0.05), columns=(-0.1, 0.1))
    files = _run(page, "edit", 4)
    np.testing.assert_array_equal(files["input.png"], fitted)
    top, left, height, width = map(int, re.search(r"--box (\d+),(\d+),(\d+),(\d+)", _settings_text(page, "edit")).groups())
    assert 8 <= top <= 14 and 8 <= left <= 14 and 4 <= height <= 12 and 6 <= width <= 14
    # Regenerated: the box widened to whole tokens of f px and grown by one token; blended in with
    # a blur of radius 1, so pixels more than 2f px beyond the box are the input's.
    factor = pipeline.tokenizer.config.downsample_factor
    margin = 2 * factor + 1
    outside = np.ones((32, 32), bool)
    outside[max(0, top - margin) : top + height + margin, max(0, left - margin) : left + width + margin] = False
    for k in range(4):
        edited = files[f"edit_{k:04d}.png"]
        np.testing.assert_array_equal(edited[outside], fitted[outside])
        assert (edited[top : top + height, left : left + width] != fitted[top : top + height, left : left + width]).any()
    _screenshot(page, "studio-edit.png")

    # Inpaint with the brush: the mask it used comes with the results.
    _open_tab(page, "Inpaint")
    _upload(page, "inpaint", tmp_path / "coat.png")
    page.locator("#inpaint-note", has_text="centre-cropped to 32x32").wait_for()
    page.locator("#inpaint-editor canvas").first.wait_for()
    _paint(page, "inpaint", rows=(0.0, 0.12), columns=(-0.12, 0.0))
    files = _run(page, "inpaint", 4)
    painted = files["mask.png"][..., 0] > 127
    rows, columns = painted.any(1).nonzero()[0], painted.any(0).nonzero()[0]
    assert 14 <= rows[0] and rows[-1] <= 26 and 6 <= columns[0] and columns[-1] <= 18  # lower left of centre
    for k in range(4):
        filled = files[f"inpaint_{k:04d}.png"]
        np.testing.assert_array_equal(filled[~painted], fitted[~painted])
        assert (filled[painted] != fitted[painted]).any()
    _screenshot(page, "studio-inpaint.png")

    # Inpaint with a mask file of the upload's size: it follows the image through the resize and crop.
    mask = np.zeros((64, 96), bool)
    mask[10:40, 30:60] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    _upload(page, "inpaint", tmp_path / "mask.png", "mask")
    files = _run(page, "inpaint", 4)
    fitted_mask = resize_crop_mask(torch.from_numpy(mask), 32).numpy()
    np.testing.assert_array_equal(files["mask.png"][..., 0] > 127, fitted_mask)
    for k in range(4):
        filled = files[f"inpaint_{k:04d}.png"]
        np.testing.assert_array_equal(filled[~fitted_mask], fitted[~fitted_mask])
        assert (filled[fitted_mask] != fitted[fitted_mask]).any()

    # Outpaint: 4 tokens (4f px) on the left and the right, the defaults.
    _open_tab(page, "Outpaint")
    _upload(page, "outpaint", tmp_path / "coat.png")
    page.locator("#outpaint-note", has_text="centre-cropped to 32x32").wait_for()
    files = _run(page, "outpaint", 4)
    for k in range(4):
        wider = files[f"outpaint_{k:04d}.png"]
        pad = 4 * factor
        assert wider.shape == (32, 32 + 2 * pad, 3)
        np.testing.assert_array_equal(wider[:, pad : pad + 32], fitted)
        assert wider[:, :pad].std() > 0 and wider[:, pad + 32 :].std() > 0  # a generated border, not a fill
    _screenshot(page, "studio-outpaint.png")

    # Bad input: a message in the page, never a traceback.
    (tmp_path / "notes.png").write_text("not an image")
    _upload(page, "outpaint", tmp_path / "notes.png")
    _expect_error(page, "notes.png: cannot read image")
    Image.new("L", (4097, 4096)).save(tmp_path / "huge.png")
    _upload(page, "outpaint", tmp_path / "huge.png")
    _expect_error(page, "huge.png: 4097x4096 = 16,781,312 pixels is over the limit of 16,777,216 for an input image")
    (tmp_path / "big.png").write_bytes(b"\0" * (10 * 2**20 + 1))
    _upload(page, "outpaint", tmp_path / "big.png")
    _expect_error(page, "exceed the maximum allowed size of 10.0 Mb")  # refused by the upload limit itself
    _open_tab(page, "Inpaint")
    Image.new("L", (32, 32)).save(tmp_path / "empty.png")
    _upload(page, "inpaint", tmp_path / "empty.png", "mask")
    page.click("#inpaint-run")
    _expect_error(page, "the mask is empty")
