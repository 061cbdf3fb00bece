"""jvae explore: the server's API on real HTTP, the command itself, and the page driven in headless Chromium.

The page must show exactly what `jvae traverse` draws and set its sliders to exactly `jvae encode`'s means;
every bad request is a JSON error with a 4xx status and the server keeps answering.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from jvae.base.media import LABEL_WIDTH
from jvae.explore.explorer import MAX_UPLOAD_BYTES, Explorer
from jvae.explore.server import listen, server
from jvae.modeling.builder import build_model
from jvae.modeling.checkpoint import Checkpoint, load_checkpoint, set_unit_names
from jvae.modeling.presets import load_preset
from jvae.training import trainer

SIDE = 32  # the digits model's image size
PAD = 2  # jvae's grid padding between tiles


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A digits model (10 continuous units, one 10-way variable, unit 0 named) trained 300 steps with the
    capacities raised over those steps: enough for a few units and the variable to carry information."""
    run = tmp_path_factory.mktemp("explore") / "run"
    quick = ["train.steps=300", "train.lr=1e-3", "train.log_every=100", "train.checkpoint_every=1000"]
    ramps = ["loss.continuous_capacity.steps=300", "loss.discrete_capacity.steps=300"]
    name, preset = load_preset("digits", quick + ramps)
    trainer.train(preset, name, run)
    set_unit_names(run / "ckpt.pt", {"0": "stroke"})
    return run / "ckpt.pt"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> list[Path]:
    """Three of scikit-learn's digits as 64x64 PNGs (the model reads them at 32x32)."""
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for index in (0, 7, 42):
        array = (load_digits().images[index] * 255 / 16).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        path = folder / f"digit{index}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Commands run in-process and the server compute with one thread, so their floats round alike."""
    monkeypatch.setenv("JVAE_THREADS", "1")


@contextmanager
def serving(explorer: Explorer) -> Iterator[str]:
    """The explorer on a real uvicorn server in a thread; yields its base URL."""
    sock = listen("127.0.0.1", 0)
    running = server(explorer, sock)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def api(ckpt, digits) -> Iterator[str]:
    loaded = load_checkpoint(ckpt)
    with serving(Explorer(loaded, torch.device("cpu"), digits)) as url:
        yield url


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    """(status, content type, body) of a GET, or of a POST when `data` is given."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {})) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as refusal:
        return refusal.code, refusal.headers["Content-Type"], refusal.read()


def error_of(url: str, data: bytes | None = None) -> tuple[int, str]:
    status, kind, body = request(url, data)
    assert kind == "application/json", (status, body[:200])
    return status, json.loads(body)["error"]


def picture(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def traverse_tile(cli, ckpt: Path, out: Path, unit: str, column: int, *args: str) -> np.ndarray:
    """Column `column` of `jvae traverse --unit UNIT ARGS --out OUT.png` (one row, from the prior mode)."""
    result = cli("traverse", ckpt, "--unit", unit, "--out", out, *args)
    assert result.exit_code == 0, result.stderr
    grid = np.asarray(Image.open(out).convert("RGB"))
    left = LABEL_WIDTH + PAD + column * (SIDE + PAD)
    return grid[PAD : PAD + SIDE, left : left + SIDE]


def encoded(cli, ckpt: Path, image: Path, out: Path) -> dict[str, float]:
    """`jvae encode IMAGE`'s code as {unit address: mean or category}."""
    result = cli("encode", ckpt, image, "--out", out)
    assert result.exit_code == 0, result.stderr
    codes = np.load(out)
    return {**{str(i): float(m) for i, m in enumerate(codes["mean"][0])}, "d0": float(codes["d0"][0])}


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header promises width x height 8-bit pixels; its data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


# ----------------------------------------------------------------------------------------------- the API


def test_the_unit_table_ranks_units_by_kl_with_their_names(api, ckpt):
    status, kind, body = request(f"{api}/api/model")
    assert status == 200 and kind == "application/json"
    model = json.loads(body)
    kl = load_checkpoint(ckpt).unit_kl
    continuous = [u for u in model["units"] if u["kind"] == "continuous"]
    assert [u["kl"] for u in continuous] == sorted(kl["continuous"], reverse=True)
    assert model["units"][-1] == {
        "address": "d0",
        "label": "d0",
        "kind": "discrete",
        "name": None,
        "kl": kl["discrete"][0],
        "categories": 10,
    }
    assert next(u for u in continuous if u["address"] == "0")["name"] == "stroke"
    assert [i["name"] for i in model["images"]] == ["digit0.png", "digit7.png", "digit42.png"]
    assert model["image_size"] == SIDE and model["classes"] == 0 and model["kind"] == "jointvae"


def test_decoding_a_unit_at_a_value_is_what_traverse_draws(api, cli, ckpt, tmp_path):
    status, kind, body = request(f"{api}/api/decode?stroke=1.25")
    assert status == 200 and kind == "image/png"
    expected = traverse_tile(
        cli, ckpt, tmp_path / "t.png", "0", 1, "--range", "0.25", "1.25", "--frames", "2"
    )
    assert np.array_equal(picture(body), expected)
    _, _, category = request(f"{api}/api/decode?d0=3")
    expected = traverse_tile(cli, ckpt, tmp_path / "d.png", "d0", 3)
    assert np.array_equal(picture(category), expected)


def test_an_upload_and_an_image_file_get_jvae_encodes_means(api, cli, ckpt, digits, tmp_path):
    means = encoded(cli, ckpt, digits[1], tmp_path / "codes.npz")
    status, _, body = request(f"{api}/api/encode", digits[1].read_bytes())
    assert status == 200 and json.loads(body)["code"] == means
    _, _, body = request(f"{api}/api/images/1/code")
    assert json.loads(body)["code"] == means
    status, kind, thumbnail = request(f"{api}/api/images/1.png")
    assert status == 200 and kind == "image/png" and picture(thumbnail).shape == (SIDE, SIDE, 3)


def test_a_prior_sample_is_reproducible_by_seed(api):
    first, second = (json.loads(request(f"{api}/api/sample?seed=7")[2]) for _ in range(2))
    assert first == second and first["code"] != json.loads(request(f"{api}/api/sample?seed=8")[2])["code"]
    assert set(first["code"]) == {*map(str, range(10)), "d0"} and first["class"] is None


@pytest.mark.parametrize(
    "path,status,message",
    [
        ("/api/decode?7x=1", 400, "unknown unit '7x'; this model has continuous units 0..9, discrete d0..d0"),
        ("/api/decode?12=1", 400, "unknown unit '12'"),
        ("/api/decode?d1=0", 400, "unknown unit 'd1'"),
        ("/api/decode?stroke=wide", 400, "unit stroke: 'wide' is not a number"),
        ("/api/decode?3=", 400, "unit 3: '' is not a number"),
        ("/api/decode?3=1e9", 400, "unit 3: '1e9' is outside -1000..1000"),
        ("/api/decode?3=nan", 400, "outside -1000..1000"),
        ("/api/decode?3=-inf", 400, "outside -1000..1000"),
        ("/api/decode?d0=10", 400, "unit d0 takes a category 0..9, not '10'"),
        ("/api/decode?d0=1.5", 400, "unit d0 takes a category 0..9"),
        ("/api/decode?3=1&z3=2", 400, "unit 'z3' is given twice"),
        ("/api/decode?class=1", 400, "class is for class-conditional models"),
        ("/api/sample?seed=-1", 400, "seed '-1': give a whole number"),
        ("/api/sample?seed=99999999999", 400, "seed '99999999999'"),
        ("/api/sample?seed=%C2%B2", 400, "seed '²': give a whole number"),
        ("/api/sample?seed=" + "9" * 5000, 400, "give a whole number"),
        ("/api/images/3/code", 404, "no image 3: the explorer was given 3"),
        ("/api/images/999999999999999999999.png", 404, "no image"),
        ("/api/images/-1.png", 404, "Not Found"),
        ("/etc/passwd", 404, "Not Found"),
        ("/explore.js/../../../../etc/passwd", 404, "Not Found"),
        ("/static/page.html", 404, "Not Found"),
        ("/api/encode", 405, "Method Not Allowed"),
    ],
)
def test_bad_requests_are_clear_json_errors(api, path, status, message):
    got_status, error = error_of(f"{api}{path}")
    assert got_status == status and message in error
    assert request(f"{api}/api/model")[0] == 200


def test_bad_uploads_are_refused_and_the_server_keeps_running(api):
    status, error = error_of(f"{api}/api/encode", b"GIF89a but not really a picture")
    assert status == 400 and error == "cannot read the upload as an image: not an image format jvae reads"
    status, error = error_of(f"{api}/api/encode", png_bomb(13000, 13000))
    assert status == 400 and "the upload is 13000x13000 (169 megapixels)" in error
    status, error = error_of(f"{api}/api/encode", b"")
    assert status == 400 and "the upload is empty" in error
    status, error = error_of(f"{api}/api/encode", b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert status == 413 and "the explorer reads images up to 16 MiB" in error
    assert request(f"{api}/api/model")[0] == 200


def raw_post(api: str, headers: dict[str, str], body=None) -> tuple[int, str]:
    """(status, error) of a POST to /api/encode sent with http.client, `body` an iterable of blocks or None."""
    host, port = api.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("POST", "/api/encode")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        for block in body or []:
            connection.send(b"%x\r\n%s\r\n" % (len(block), block))
        if body is not None:
            connection.send(b"0\r\n\r\n")
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())["error"]
    finally:
        connection.close()


def test_oversized_uploads_are_answered_however_they_are_sent(api):
    """A body sent without a length is read to its end (up to a bound) and then refused; a body declared
    far beyond the limit is refused before it is sent."""
    blocks = (b"\0" * 2**20 for _ in range(MAX_UPLOAD_BYTES // 2**20 + 4))
    status, error = raw_post(api, {"Transfer-Encoding": "chunked"}, blocks)
    assert status == 413 and error == "the upload is 20.0 MiB; the explorer reads images up to 16 MiB"
    status, error = raw_post(api, {"Content-Length": str(2**40)})
    assert status == 413 and error == "the upload is over 64 MiB; the explorer reads images up to 16 MiB"
    assert request(f"{api}/api/model")[0] == 200


def test_requests_for_another_host_name_are_refused(api):
    status, kind, body = request(f"{api}/api/model", headers={"Host": "attacker.example:80"})
    assert status == 421 and "attacker.example" in json.loads(body)["error"]
    assert request(f"{api}/api/model", headers={"Host": "localhost"})[0] == 200


def test_the_page_loads_nothing_from_elsewhere(api):
    status, kind, page = request(f"{api}/")
    assert status == 200 and kind.startswith("text/html")
    for asset in ("/explore.js", "/explore.css"):
        assert request(f"{api}{asset}")[0] == 200
    _, _, script = request(f"{api}/explore.js")
    for text in (page, script):
        assert b"http://" not in text and b"https://" not in text and b"//cdn" not in text
    headers = urllib.request.urlopen(f"{api}/").headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "preset",
    [
        "digits-class-conditional",
        "dsprites-beta-vae",
        "dsprites-factor-vae",
        "dsprites-grouped-vae",
        "celeba",
        "celeba-128",
    ],
)
def test_every_model_kind_and_image_size(preset, digits, tmp_path):
    name, resolved = load_preset(preset)
    path = tmp_path / "ckpt.pt"
    Checkpoint.new(name, resolved, build_model(resolved).state_dict()).save(path)
    loaded = load_checkpoint(path)
    model, side = loaded.model, resolved.data.image_size
    with serving(Explorer(loaded, torch.device("cpu"), [])) as url:
        described = json.loads(request(f"{url}/api/model")[2])
        assert len(described["units"]) == model.continuous + len(model.discrete)
        label = "&class=2" if model.classes else ""
        code = json.loads(request(f"{url}/api/encode?{label.strip('&')}", digits[0].read_bytes())[2])
        query = "&".join(f"{address}={value}" for address, value in code["code"].items()) + label
        status, kind, body = request(f"{url}/api/decode?{query}")
        assert status == 200 and kind == "image/png" and picture(body).shape == (side, side, 3)
        sampled = json.loads(request(f"{url}/api/sample?seed=1{label}")[2])
        assert set(sampled["code"]) == set(code["code"])
        if model.classes:
            assert code["class"] == 2 and described["classes"] == 10
            other = request(f"{url}/api/decode?{query.replace('class=2', 'class=5')}")[2]
            assert not np.array_equal(picture(other), picture(body))
            for label in ("10", "-1", "%C2%B2", "1" * 5000):
                status, error = error_of(f"{url}/api/decode?class={label}")
                assert status == 400 and "this model knows classes 0..9" in error


# ----------------------------------------------------------------------------------------------- the command


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`jvae explore ARGS` in its own process; returns it and the URL it printed."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jvae",
            "explore",
            *args,
            "--port",
            "0",
            "--no-browser",
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JVAE_THREADS": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        raise AssertionError(f"jvae explore did not start: {line}{process.communicate()[1]}")
    return process, line.split()[2]


def stop(process: subprocess.Popen[str]) -> str:
    """Ctrl-C it, as a user would; returns what it wrote to stderr."""
    process.send_signal(2)
    _, stderr = process.communicate(timeout=20)
    return stderr


def test_explore_serves_loopback_only_unless_told_and_then_warns(ckpt):
    process, url = start(str(ckpt))
    try:
        assert url.startswith("http://127.0.0.1:") and request(f"{url}api/model")[0] == 200
    finally:
        stderr = stop(process)
    assert process.returncode in (0, 130) and "warning" not in stderr and "Traceback" not in stderr
    process, url = start(str(ckpt), "--host", "0.0.0.0")
    try:
        assert request(f"{url}api/model")[0] == 200
    finally:
        stderr = stop(process)
    assert "warning: listening on 0.0.0.0" in stderr and "anyone who can reach this port" in stderr


def test_explore_refuses_what_it_cannot_serve(cli, ckpt, digits, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    result = cli("explore", ckpt, "--image", broken, "--no-browser")
    assert result.exit_code == 1 and result.stderr.startswith(f"error: cannot read image {broken}")
    result = cli("explore", ckpt, "--class", "1", "--no-browser")
    assert result.exit_code == 2 and "--class is for class-conditional models" in result.stderr
    taken = listen("127.0.0.1", 0)
    try:
        result = cli("explore", ckpt, "--port", str(taken.getsockname()[1]), "--no-browser")
    finally:
        taken.close()
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------- the browser


def chromium() -> str | None:
    """A Chromium to drive: $JVAE_CHROMIUM, else one on PATH (Debian's package installs /usr/bin/chromium)."""
    named = os.environ.get("JVAE_CHROMIUM")
    if named:
        return named
    return next(
        filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None
    )


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


@pytest.fixture(scope="module")
def page(ckpt, digits):
    """The explorer page of `jvae explore CKPT --image ...` open in headless Chromium."""
    executable = chromium()
    if executable is None:
        pytest.skip(
            "no Chromium installed (apt-get install chromium, or set JVAE_CHROMIUM); .ci/run installs it"
        )
    from playwright.sync_api import sync_playwright

    process, url = start(str(ckpt), *(arg for path in digits for arg in ("--image", str(path))))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1180, "height": 860})
            tab.decoded = []
            tab.route("**/api/decode?*", lambda route: keep_decoded(tab, route))
            tab.goto(url)
            settle(tab)
            yield tab
            browser.close()
    finally:
        stop(process)


def keep_decoded(tab, route) -> None:
    """Pass a decode request on to the server and keep the PNG it answers, as the page receives it."""
    answer = route.fetch()
    if answer.ok:
        tab.decoded.append(answer.body())
    route.fulfill(response=answer)


def settle(tab) -> None:
    """Wait until every request the page made has been answered and drawn."""
    tab.wait_for_selector("#picture[data-state='ready']", state="attached")


def shown(tab) -> bytes:
    """The PNG the page is showing: the body of the last decode it received (it draws each one in turn;
    the page's own Content-Security-Policy forbids the test to evaluate script in it)."""
    return tab.decoded[-1]


def values(tab) -> dict[str, float]:
    return {
        row.get_attribute("data-address"): float(row.get_attribute("data-value"))
        for row in tab.query_selector_all(".unit")
    }


def test_moving_a_slider_draws_what_traverse_draws(page, cli, ckpt, tmp_path):
    page.click("#reset")
    settle(page)
    before = shown(page)
    top = page.query_selector(".unit[data-kind=continuous]")
    address = top.get_attribute("data-address")
    page.focus(f"#unit-{address}")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    settle(page)
    value = top.get_attribute("data-value")
    after = shown(page)
    assert float(value) > 0 and after != before
    low = str(float(value) - 1)
    expected = traverse_tile(
        cli, ckpt, tmp_path / "t.png", address, 1, "--range", low, value, "--frames", "2"
    )
    assert np.array_equal(picture(after), expected)
    page.click("#reset")
    page.select_option("#unit-d0", "4")
    settle(page)
    assert np.array_equal(picture(shown(page)), traverse_tile(cli, ckpt, tmp_path / "d.png", "d0", 4))
    assert page.is_hidden("#error")


def test_an_uploaded_image_sets_every_slider_to_its_encoded_means(page, cli, ckpt, digits, tmp_path):
    page.set_input_files("#upload", str(digits[2]))
    settle(page)
    assert values(page) == encoded(cli, ckpt, digits[2], tmp_path / "codes.npz")
    assert page.is_hidden("#error")
    page.screenshot(path=os.environ.get("JVAE_EXPLORE_SCREENSHOT") or str(tmp_path / "explore.png"))
    page.click("#images button[data-index='1']")
    settle(page)
    assert values(page) == encoded(cli, ckpt, digits[1], tmp_path / "one.npz")
    page.click("#random")
    settle(page)
    assert values(page) != encoded(cli, ckpt, digits[1], tmp_path / "one.npz")


def test_a_corrupt_upload_shows_an_error_and_the_page_goes_on(page, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    before = values(page)
    page.set_input_files("#upload", str(corrupt))
    settle(page)
    assert page.is_visible("#error") and "cannot read the upload as an image" in page.text_content("#error")
    assert values(page) == before
    image = shown(page)
    row = page.query_selector(".unit[data-kind=continuous]")
    # Earlier tests leave the slider anywhere (a random prior sample); a key that moves it past its end
    # would change nothing.
    at_minimum = float(row.get_attribute("data-value")) <= float(
        row.query_selector("input").get_attribute("min")
    )
    page.focus(".unit[data-kind=continuous] input")
    page.keyboard.press("ArrowRight" if at_minimum else "ArrowLeft")
    settle(page)
    assert page.is_hidden("#error") and shown(page) != image
