"""A real browser (Debian's chromium through playwright), in a 1280 x 800 window, drives one action in
each tab of the app launched in-process (conftest's app_server) and checks that an output image
appears; on open, every tab's inputs and main result lie within the first screen, the result at least
display.MIN_SIDE px on its long side; a click on an enlarged image reports the model pixel under it. Saves a
screenshot of each tab to $SCREENSHOT_DIR (default: a temporary folder), so a test run never
changes tracked files. The README's pictures, from the bundled checkpoints:
    APP_SERVER_BUNDLED=1 SCREENSHOT_DIR=docs/screenshots python -m pytest tests/test_browser_app.py"""

import contextlib
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from demos import examples

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "correspondence-gans-screenshots")
TIMEOUT_MS = 60_000
WIDTH, HEIGHT = 1280, 800  # the window a visitor on a laptop has

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")


@contextlib.contextmanager
def browser_page(url: str):
    """A WIDTH x HEIGHT page of headless chromium on `url`, once the app's tabs are there."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("tab", name="Structure & texture").wait_for()
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(app_server):
    with browser_page(app_server.url) as page:
        yield page


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


def settled(page, *elem_ids: str) -> None:
    """Wait until none of the components shows Gradio's running status ("processing | 0.2s", or a
    progress line "... - 10.0%" with its timer): a result of the same size may already be there."""
    page.wait_for_timeout(300)  # the status appears a moment after the click
    for elem_id in elem_ids:
        page.wait_for_function(
            r"id => !/processing|\d%|\d\.\ds/.test(document.getElementById(id).innerText)", arg=elem_id)


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


# tab: (inputs that must be on the first screen, the main result, the other outputs shown on open)
FIRST_SCREEN = {
    "Structure & texture": (["st-image"], "st-image", ["st-correspondence", "st-clicked", "st-grid"]),
    "Label propagation": (["lp-reference", "lp-labels", "lp-query"], "lp-overlay", ["lp-label-map", "lp-clicked"]),
    "Congealing & edits": (["gg-set", "gg-image", "gg-canvas"], "gg-edited", ["gg-congealed", "gg-clicked"]),
    "Exemplar translation": (["et-input", "et-exemplar"], "et-result", ["et-warped", "et-marked"]),
    "Appearance transfer": (["coat-content", "coat-style"], "coat-result", ["coat-matches", "coat-clicked"]),
    "Compare": (["cmp-a", "cmp-b"], "cmp-gallery", []),
    "Synthetic data": ([], "synthetic-image", []),
}


def on_first_screen(page, elem_id: str) -> dict:
    """The element's box with the page scrolled to the top; asserts that it lies within the window."""
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator(f"#{elem_id}").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, f"{elem_id}: {box}"
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, f"{elem_id}: {box}"
    return box


def test_every_tab_opens_readable_on_the_first_screen(page, app_server):
    """Before any click: each tab's inputs and main result are within the first 1280 x 800 screen, the
    result's image box >= display.MIN_SIDE px on its long side; the other outputs hold an example."""
    from demos.display import MIN_SIDE
    from demos.matching import PANEL

    for tab, (inputs, main, others) in FIRST_SCREEN.items():
        page.get_by_role("tab", name=tab).click()
        for elem_id in [main, *others]:
            width, height = output_image(page, elem_id)
            assert width > 0 and (height == PANEL or not elem_id.endswith(("clicked", "marked")))
        for elem_id in inputs:
            on_first_screen(page, elem_id)
        on_first_screen(page, main)
        page.evaluate("window.scrollTo(0, 0)")
        box = page.locator(f"#{main} img").first.bounding_box()
        assert max(box["width"], box["height"]) >= MIN_SIDE - 1, f"{tab}: {main} shown at {box}"
        if others and others[-1].endswith(("clicked", "marked")):
            assert "confidence" in page.locator(f"#{others[-1]}-text textarea").input_value()
        page.evaluate("window.scrollTo(0, 0)")


def test_a_click_on_an_enlarged_image_reports_the_model_pixel(page, app_server):
    """The structure tab shows its 64 px image enlarged k times; a click at the centre of displayed
    block (i, j) reports model pixel (i, j)."""
    from demos.display import factor

    page.get_by_role("tab", name="Structure & texture").click()
    r = app_server.pipelines["coordgan"].generator.resolution
    k = factor((r, r))
    assert output_image(page, "st-image") == [r * k, r * k]
    text = page.locator("#st-clicked-text textarea")
    img = page.locator("#st-image img").first
    for mx, my in ((5, 9), (r - 3, r // 2)):
        before = text.input_value()
        box = img.bounding_box()
        scale = box["width"] / (r * k)  # 1 unless the browser shrank the picture to fit
        img.click(position={"x": (mx * k + k / 2) * scale, "y": (my * k + k / 2) * scale})
        page.wait_for_function("([el, old]) => el.value && el.value !== old", arg=[text.element_handle(), before])
        assert text.input_value().startswith(f"({mx}, {my}) in the image"), text.input_value()


def test_structure_and_texture_tab(page, app_server):
    from demos.display import factor

    page.get_by_role("tab", name="Structure & texture").click()
    page.get_by_role("button", name="Generate", exact=True).click()
    r = app_server.pipelines["coordgan"].generator.resolution
    assert output_image(page, "st-image") == [r * factor((r, r))] * 2  # enlarged for the eye; the API returns r x r
    assert output_image(page, "st-correspondence") == [r, r]
    page.get_by_role("button", name="Grid", exact=True).click()
    assert output_image(page, "st-grid") == [5 * r, 3 * r]
    assert "in the second structure's, confidence" in click_match(page, "st-image", "st-clicked")
    shoot(page, "structure_texture")


def test_label_propagation_tab(page, app_server):
    page.get_by_role("tab", name="Label propagation").click()
    assert "in B, confidence" in click_match(page, "lp-reference",
                                             "lp-clicked")  # on the example reference shown on open
    # a generated reference, a label map painted on it with the class palette, an uploaded query
    page.get_by_text("More queries, a generated reference, painting, classes").click()
    page.get_by_role("button", name="Generate a reference").click()
    r = app_server.pipelines["coordgan"].generator.resolution
    assert output_image(page, "lp-reference", [r, r]) == [r, r]  # replaces the example shown on open
    page.locator("#lp-painter canvas").first.wait_for()
    page.wait_for_timeout(500)  # the editor takes the reference as its background
    paint(page, "lp-painter")
    assert output_image(page, "lp-labels", [r, r]) == [r, r]  # the painted strokes became a label map
    upload(page, "lp-query", examples.path("face_1.png"))
    page.get_by_role("button", name="Propagate labels").click()
    settled(page, "lp-overlay", "lp-label-map")  # the opening example's results have the same size
    assert output_image(page, "lp-overlay") == [examples.RESOLUTION] * 2
    assert output_image(page, "lp-label-map") == [examples.RESOLUTION] * 2
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "label_propagation")


def test_congealing_tab(page, app_server):
    page.get_by_role("tab", name="Congealing & edits").click()
    # congeal a set, paint on the average congealed image, propagate to an image and a GIF
    page.locator("#gg-set input[type=file]").first.set_input_files([examples.path(f"face_{i}.png") for i in range(4)])
    page.get_by_role("button", name="Congeal and average").click()
    page.locator("#gg-canvas canvas").first.wait_for()
    page.locator("#gg-congealed-set img").first.wait_for(state="visible")  # the congealed set is shown
    page.wait_for_timeout(1500)  # the average image arrives as the canvas background
    paint(page, "gg-canvas")
    face = Image.open(examples.path("face_2.png")).convert("RGB")
    size = app_server.pipelines["gangealing"].congeal([face]).images[0].size
    assert output_image(page, "gg-edit", list(size)) == list(size)  # the painted RGBA edit replaces the example
    upload(page, "gg-image", examples.path("face_2.png"))
    page.locator("#gg-video-in input[type=file]").first.set_input_files(examples.path("video.gif"))
    page.get_by_role("button", name="Congeal the image to edit").click()
    assert output_image(page, "gg-congealed") == list(size)
    assert "in B, confidence" in click_match(page, "gg-image", "gg-clicked")
    page.get_by_role("button", name="Propagate the edit").click()
    assert output_image(page, "gg-edited") == [examples.RESOLUTION] * 2
    assert output_image(page, "gg-video") == [examples.RESOLUTION] * 2
    page.evaluate("window.scrollTo(0, 0)")
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
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "exemplar_translation")


def test_appearance_transfer_tab(page, app_server):
    from demos.appearance_transfer import synthetic_pair
    from demos.matching import PANEL

    page.get_by_role("tab", name="Appearance transfer").click()
    content, style, _ = synthetic_pair()
    upload(page, "coat-content", content)
    upload(page, "coat-style", style)
    page.get_by_role("button", name="Transfer appearance").click()
    assert output_image(page, "coat-result") == [examples.RESOLUTION] * 2  # the content's size
    width, height = output_image(page, "coat-matches")
    assert height == PANEL and width > 2 * PANEL
    assert "in B, confidence" in click_match(page, "coat-content", "coat-clicked")
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "appearance_transfer")


def test_compare_tab(page, app_server):
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.locator("#cmp-gallery img").first.wait_for(state="visible")
    settled(page, "cmp-gallery", "cmp-table")  # the click's run done too (the opening one filled them first)
    table = page.locator("#cmp-table").inner_text()
    for name in ("coordgan", "gangealing", "cocosnet", "coat", "identity"):
        assert name in table
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "compare")


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


def test_a_face_photo_is_aligned_and_its_labels_pasted_back(page, app_server, face_app_server, tmp_path):
    """On a face model (the bundled kind): the astronaut as the query is aligned to the model's frame,
    the gallery shows the crop the model saw, the overlay is the whole photo with the labels pasted."""
    import skimage.data

    photo = tmp_path / "astronaut-query.png"
    Image.fromarray(skimage.data.astronaut()).resize((384, 384)).save(photo)
    page.goto(face_app_server.local_url)  # the same browser (one sync playwright a process), face models
    page.get_by_role("tab", name="Structure & texture").wait_for()
    try:
        page.get_by_role("tab", name="Label propagation").click()
        assert page.locator("#lp-align input[type=checkbox]").is_checked()  # on by default for a face model
        upload(page, "lp-query", str(photo))
        page.get_by_role("button", name="Propagate labels").click()
        assert output_image(page, "lp-overlay", [384, 384]) == [384, 384]  # the photo, labels pasted back
        page.get_by_text("query 1: the aligned crop the model saw").first.wait_for(state="attached")
        page.wait_for_timeout(1000)  # the last outputs settle (no progress veil in the picture)
        page.evaluate("window.scrollTo(0, 0)")
        shoot(page, "face_photo")
    finally:
        page.goto(app_server.url)
        page.get_by_role("tab", name="Structure & texture").wait_for()
