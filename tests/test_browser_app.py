"""A real browser (Debian's chromium through playwright) drives one action in each tab of the app
launched in-process (conftest's app_server) and checks that an output image appears. Saves a
screenshot of each tab to $SCREENSHOT_DIR (default: a temporary folder), so a test run never
changes tracked files. The README's pictures, from the bundled checkpoints:
    APP_SERVER_BUNDLED=1 SCREENSHOT_DIR=docs/screenshots python -m pytest tests/test_browser_app.py"""

import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from demos import examples

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "correspondence-gans-screenshots")
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")


@pytest.fixture(scope="module")
def page(app_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_server.url)
        page.get_by_role("tab", name="Structure & texture").wait_for()
        yield page
        browser.close()


def output_image(page, elem_id: str, size=None):
    """Wait until the output component shows a loaded image (of `size` [w, h] when given: the
    component may still show its example); returns its natural size. Polls the live element, as
    Gradio may replace the <img> while it loads."""
    page.locator(f"#{elem_id}").scroll_into_view_if_needed()  # lazy images load when near the viewport
    page.locator(f"#{elem_id} img").first.wait_for(state="visible")
    want = list(size) if size is not None else None
    handle = page.wait_for_function(
        """([sel, want]) => { const el = document.querySelector(sel);
            if (!el || !el.complete || el.naturalWidth === 0) return null;
            const got = [el.naturalWidth, el.naturalHeight];
            return (want === null || (got[0] === want[0] && got[1] === want[1])) ? got : null; }""",
        arg=[f"#{elem_id} img", want])
    return handle.json_value()


def upload(page, elem_id: str, path: str):
    page.locator(f"#{elem_id} input[type=file]").first.set_input_files(path)
    page.locator(f"#{elem_id} img").first.wait_for(state="visible")


def paint(page, elem_id: str, length: int = 40):
    """Choose the brush of the gr.ImageEditor `elem_id` and draw one stroke across its middle."""
    editor = page.locator(f"#{elem_id}")
    editor.scroll_into_view_if_needed()
    editor.get_by_role("button", name="Brush").first.click()
    box = editor.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - length / 2, cy - length / 2)
    page.mouse.down()
    page.mouse.move(cx, cy - length / 4)  # each move redraws the (software-rendered) canvas: few moves
    page.mouse.move(cx + length / 2, cy)
    page.mouse.up()


def shoot(page, name: str, top: str | None = None):
    """A small PNG of the viewport (palette-quantised to stay well under 300 KB), with the element
    `top` at its top edge when given."""
    from PIL import Image

    if top is not None:
        page.locator(f"#{top}").evaluate("el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    assert path.stat().st_size < 300_000
    return path


def click_match(page, source_id: str, view_id: str) -> str:
    """Click the image `source_id` a little up and left of its middle (the opening result is the
    middle's match); wait for the match view (point | heat map and match, PANEL px high) in
    `view_id`; returns the numbers shown beside it."""
    from demos.matching import PANEL

    text = page.locator(f"#{view_id}-text textarea")
    before = text.input_value()
    img = page.locator(f"#{source_id} img").first
    box = img.bounding_box()
    img.click(position={"x": box["width"] * 0.35, "y": box["height"] * 0.4})
    page.wait_for_function("([el, old]) => el.value && el.value !== old", arg=[text.element_handle(), before])
    assert output_image(page, view_id)[1] == PANEL
    return text.input_value()


def test_every_tab_shows_a_result_on_open(page, app_server):
    """Before any click: each tab's main output and its click-to-match view already hold an example."""
    from demos.matching import PANEL

    outputs = {"Structure & texture": ["st-image", "st-grid", "st-clicked"],
               "Label propagation": ["lp-overlay", "lp-label-map", "lp-clicked", "gg-congealed", "gg-clicked"],
               "Exemplar translation": ["et-result", "et-warped", "et-marked"],
               "Appearance transfer": ["coat-result", "coat-matches", "coat-clicked"], "Synthetic data": ["synthetic-image"]}
    for tab, ids in outputs.items():
        page.get_by_role("tab", name=tab).click()
        for elem_id in ids:
            width, height = output_image(page, elem_id)
            assert width > 0 and (height == PANEL or not elem_id.endswith(("clicked", "marked")))
        if ids[-1].endswith(("clicked", "marked")):
            assert "confidence" in page.locator(f"#{ids[-1]}-text textarea").input_value()


def test_structure_and_texture_tab(page, app_server):
    page.get_by_role("tab", name="Structure & texture").click()
    page.get_by_role("button", name="Generate", exact=True).click()
    r = app_server.pipelines["coordgan"].generator.resolution
    assert output_image(page, "st-image") == [r, r]
    assert output_image(page, "st-correspondence") == [r, r]
    page.get_by_role("button", name="Grid", exact=True).click()
    assert output_image(page, "st-grid") == [5 * r, 3 * r]
    assert "in the second structure's, confidence" in click_match(page, "st-image", "st-clicked")
    shoot(page, "structure_texture", top="st-image")


def test_label_propagation_tab(page, app_server):
    page.get_by_role("tab", name="Label propagation").click()
    assert "in B, confidence" in click_match(page, "lp-reference", "lp-clicked")  # on the example reference shown on open
    # a generated reference, a label map painted on it with the class palette, an uploaded query
    page.get_by_role("button", name="Generate a reference").click()
    r = app_server.pipelines["coordgan"].generator.resolution
    assert output_image(page, "lp-reference", [r, r]) == [r, r]  # replaces the example shown on open
    page.get_by_text("Paint the label map on the reference").click()
    page.locator("#lp-painter canvas").first.wait_for()
    page.wait_for_timeout(500)  # the editor takes the reference as its background
    paint(page, "lp-painter")
    assert output_image(page, "lp-labels", [r, r]) == [r, r]  # the painted strokes became a label map
    upload(page, "lp-query", examples.path("face_1.png"))
    page.get_by_role("button", name="Propagate labels").click()
    assert output_image(page, "lp-overlay") == [examples.RESOLUTION] * 2
    assert output_image(page, "lp-label-map") == [examples.RESOLUTION] * 2
    page.locator("#lp-reference").scroll_into_view_if_needed()
    shoot(page, "label_propagation")
    if not app_server.pipelines["gangealing"]:
        return
    # congeal a set, paint on the average congealed image, propagate to an image and a GIF
    page.locator("#gg-set input[type=file]").first.set_input_files([examples.path(f"face_{i}.png") for i in range(4)])
    page.get_by_role("button", name="Congeal and average").click()
    page.locator("#gg-canvas canvas").first.wait_for()
    page.locator("#gg-congealed-set img").first.wait_for(state="visible")  # the congealed set is shown
    page.wait_for_timeout(1500)  # the average image arrives as the canvas background
    paint(page, "gg-canvas")
    size = app_server.pipelines["gangealing"].congeal([Image.open(examples.path("face_2.png")).convert("RGB")]).images[0].size
    assert output_image(page, "gg-edit") == list(size)  # the RGBA edit on the congealed frame
    upload(page, "gg-image", examples.path("face_2.png"))
    page.locator("#gg-video-in input[type=file]").first.set_input_files(examples.path("video.gif"))
    page.get_by_role("button", name="Congeal this image").click()
    assert output_image(page, "gg-congealed") == list(size)
    assert "in B, confidence" in click_match(page, "gg-image", "gg-clicked")
    page.get_by_role("button", name="Propagate the edit").click()
    assert output_image(page, "gg-edited") == [examples.RESOLUTION] * 2
    assert output_image(page, "gg-video") == [examples.RESOLUTION] * 2
    page.locator("#gg-canvas").scroll_into_view_if_needed()
    shoot(page, "edit_propagation")


def test_exemplar_translation_tab(page, app_server):
    if not app_server.pipelines["cocosnet"]:
        pytest.skip("cocosnet has not landed")
    page.get_by_role("tab", name="Exemplar translation").click()
    upload(page, "et-input", examples.path("face_0_labels_color.png"))
    upload(page, "et-exemplar", examples.path("exemplar_3.png"))
    page.get_by_role("button", name="Translate", exact=True).click()
    assert output_image(page, "et-result") == [examples.RESOLUTION] * 2
    assert output_image(page, "et-warped") == [examples.RESOLUTION] * 2
    assert "in B, confidence" in click_match(page, "et-input", "et-marked")  # where does this point land?
    assert output_image(page, "et-marked") == [256 + 8 + 256, 256]  # input | exemplar, each 256 px high
    shoot(page, "exemplar_translation", top="et-result")


def test_appearance_transfer_tab(page, app_server):
    from demos.appearance_transfer import MATCH_PANEL, synthetic_pair

    page.get_by_role("tab", name="Appearance transfer").click()
    content, style, _ = synthetic_pair()
    upload(page, "coat-content", content)
    upload(page, "coat-style", style)
    page.get_by_role("button", name="Transfer appearance").click()
    assert output_image(page, "coat-result") == [examples.RESOLUTION] * 2  # the content's size
    width, height = output_image(page, "coat-matches")
    assert height == MATCH_PANEL and width > 2 * MATCH_PANEL
    assert "in B, confidence" in click_match(page, "coat-content", "coat-clicked")
    shoot(page, "appearance_transfer", top="coat-result")


def test_synthetic_data_tab(page):
    page.get_by_role("tab", name="Synthetic data").click()
    output_image(page, "synthetic-image")  # the example shown on open
    before = page.locator("#synthetic-image img").first.get_attribute("src")
    seed = page.get_by_label("Structure seed").last
    seed.fill("3")
    seed.press("Enter")
    page.wait_for_function("([sel, old]) => { const el = document.querySelector(sel); return el && el.src !== old; }",
                           arg=["#synthetic-image img", before])  # a new render replaced it
    assert output_image(page, "synthetic-image") == [128, 128]
