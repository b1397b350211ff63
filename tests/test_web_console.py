"""The web console in a real headless Chromium (Debian's), driven by Playwright.

A real uvicorn server on a free port serves the console over a pick loop with the shipped demo
bundle (a real detection), a synthetic camera, and the Robotiq and arm simulators on 127.0.0.1.
The test types a command, sees the overlay and the candidates appear, confirms, presses Escape
and checks the arm simulator received the stop; the microphone button must say that speech
recognition is unavailable (headless Chromium has no microphone). A screenshot goes to the
test's tmp folder; with ``LANGGRASP_CONSOLE_SCREENSHOT=docs/console.png`` it is also written
there (that is how the README's picture is made).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import pytest

from langgrasp.runtime.cameras import SyntheticCamera
from langgrasp.runtime.demo import DEMO_BUNDLE, demo_cell, demo_scene_config
from langgrasp.runtime.engine import GraspDetector
from langgrasp.runtime.pick import LoopState
from langgrasp.runtime.robotiq import RobotiqCommand
from langgrasp.runtime.sim.arm import ArmSim
from langgrasp.runtime.sim.robotiq import RobotiqSim
from langgrasp.runtime.web.server import WebServer
from langgrasp.runtime.web.settings import WebSettings

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing (Debian/Ubuntu: sudo apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing (pip install 'langgrasp[dev]')"
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
SEED = 4  # the scene `langgrasp demo` picks (the demo bundle finds its target)
SLOW_M_S = 0.05  # the simulated arm needs seconds per move, so Escape lands during one
VIEWPORT = {"width": 1280, "height": 860}
WAIT_MS = 20_000  # generous limit for waits in the page (never a timing assertion)
WAIT_S = WAIT_MS / 1000
MIN_PIXEL_STD = 10.0  # a blank or single-colour page has a standard deviation near 0
TOKEN = "console-token-0123456789"
SCREENSHOT_ENV = "LANGGRASP_CONSOLE_SCREENSHOT"
FAULT_NEEDING_ACTIVATION = 14  # gFLT 14: a major fault, cleared by a new activation


@pytest.fixture(scope="module")
def detector():
    return GraspDetector(DEMO_BUNDLE, providers=["cpu"])


@pytest.fixture
def robot(detector):
    """(loop, arm simulator, gripper simulator) over the demo scene, executing against them."""
    scene_config = demo_scene_config()
    camera = SyntheticCamera(SEED, scene_config)
    camera.connect()
    gripper_sim = RobotiqSim(finger_speed_m_s=5.0, activation_s=0.01)
    arm_sim = ArmSim(speed_m_s=SLOW_M_S)
    with demo_cell(camera, detector, gripper_sim, arm_sim, auto_confirm=False) as cell:
        yield cell.loop, arm_sim, gripper_sim


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright, tmp_path):
    """A fresh Chromium profile; page errors and console errors are collected."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
    )
    context.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page = context.pages[0] if context.pages else context.new_page()
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    yield page, errors
    context.close()


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def overlay_src(page) -> str:
    return page.eval_on_selector("#overlay", "img => img.src")


def test_command_overlay_confirm_escape_and_microphone(robot, browser, tmp_path):
    loop, arm_sim, _ = robot
    page, errors = browser
    command = loop.camera.scene.text  # the scene's own instruction
    with WebServer(loop, WebSettings(port=0)) as server:
        page.goto(server.url)
        page.wait_for_selector("#conn.on")  # the event stream is connected
        page.wait_for_function("() => document.getElementById('overlay').src.startsWith('blob:')")
        before = overlay_src(page)  # a live frame: nothing detected yet
        assert page.inner_text("#mode") == "EXECUTE"

        page.fill("#command", command)
        page.press("#command", "Enter")
        page.wait_for_function(
            "() => document.getElementById('overlay').dataset.detectionId === '1'"
        )
        assert overlay_src(page) != before
        size = page.eval_on_selector("#overlay", "img => [img.naturalWidth, img.naturalHeight]")
        assert size == list(loop.last_frame.size)
        page.wait_for_selector("#candidates tr.offered")
        ranks = page.eval_on_selector_all("#candidates tr[data-rank]", "rows => rows.length")
        assert ranks == len(loop.status()["candidates"]) >= 1
        assert "offered" in page.inner_text("#candidates tr.offered")
        assert "awaiting confirm" in page.inner_text("#loop-state")
        page.wait_for_selector("#audit li")

        shot = tmp_path / "console.png"
        page.screenshot(path=str(shot))
        picture = cv2.imread(str(shot))
        assert picture is not None and picture.std() > MIN_PIXEL_STD  # not a blank page
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])

        page.click("#confirm")
        page.wait_for_function(  # the confirmation's reply is on screen
            "() => document.getElementById('reply').textContent.startsWith('confirmed')"
        )
        wait_for(lambda: arm_sim.state.name == "MOVING", "the arm to move")
        assert arm_sim.stops == 0
        page.keyboard.press("Escape")
        wait_for(lambda: arm_sim.stops >= 1, "the arm stop register write")
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.STOPPED
        assert arm_sim.state.name == "STOPPED"
        page.wait_for_selector("#loop-state.stopped")
        page.wait_for_function(  # the stop's own reply
            "() => document.getElementById('reply').textContent.startsWith('stopped')"
        )

        page.click("#mic")
        page.wait_for_function(
            "() => document.getElementById('mic-status').textContent.includes('unavailable')"
        )
    assert errors == [], errors


def test_activate_asks_first_and_reactivates_a_faulted_gripper(robot, browser):
    loop, _, gripper_sim = robot
    page, errors = browser
    gripper_sim.inject_fault(FAULT_NEEDING_ACTIVATION)
    gripper_sim.clear_writes()
    with WebServer(loop, WebSettings(port=0)) as server:
        page.goto(server.url)
        page.wait_for_selector("#activate.needed")  # the faulted gripper asks for it
        questions: list[str] = []

        def answer(accept: bool):
            def handle(dialog) -> None:
                questions.append(dialog.message)
                dialog.accept() if accept else dialog.dismiss()

            return handle

        page.once("dialog", answer(False))
        page.click("#activate")
        assert len(questions) == 1 and "open and close fully" in questions[0]
        page.once("dialog", answer(True))
        page.click("#activate")
        page.wait_for_function(
            "() => document.getElementById('reply').textContent.startsWith('activating')"
        )
        assert loop.wait_until_settled(WAIT_S)
        page.wait_for_selector("#activate:not(.needed)")  # activated: the fault is cleared
        assert loop.state is LoopState.IDLE, loop.status()["message"]
    assert len(questions) == 2
    commands = [RobotiqCommand.from_registers(values) for _, values in gripper_sim.writes]
    activations = [c for c in commands if c.activate and not c.go]
    assert len(activations) == 1  # the declined click sent nothing
    assert errors == [], errors


def test_console_sends_the_token_from_the_url_fragment(robot, browser):
    loop, _, _ = robot
    page, errors = browser
    with WebServer(loop, WebSettings(port=0, token=TOKEN)) as server:
        page.goto(f"{server.url}#token={TOKEN}")
        page.wait_for_selector("#conn.on")
        assert page.evaluate("location.hash") == ""  # the token left the address bar
        page.wait_for_selector("#devices dd")
        page.click("#stop")
        page.wait_for_selector("#loop-state.stopped")
    assert loop.state is LoopState.STOPPED
    assert errors == [], errors


def test_a_malformed_token_leaves_stop_working_and_a_failed_stop_is_shown(robot, browser):
    loop, _, _ = robot
    page, errors = browser
    with WebServer(loop, WebSettings(port=0)) as server:
        page.goto(f"{server.url}#token=%E0%A4%A")  # not valid percent-encoded UTF-8
        page.wait_for_function(
            "() => document.getElementById('reply').textContent.includes('could not be read')"
        )
        assert page.evaluate("location.hash") == ""
        page.click("#stop")
        page.wait_for_selector("#loop-state.stopped")
        assert loop.state is LoopState.STOPPED
        page.wait_for_selector("#conn.on")  # the rest of the page runs too
        assert errors == [], errors
    # The server is gone: the stop cannot be delivered and the page says so.
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => document.getElementById('reply').textContent.startsWith('STOP FAILED')"
    )
