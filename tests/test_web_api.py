"""The HTTP API over the pick loop, end to end against the simulated gripper and arm.

The loop is built from a robot.toml-like dict (as ``langgrasp serve`` builds it) with the Robotiq
and arm simulators on 127.0.0.1, a synthetic RGB-D camera and a detector that returns the scene's
ground-truth grasps (the API is under test, not the model). Most tests use FastAPI's TestClient;
the event stream, the MJPEG stream and the auth rule run against real uvicorn servers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.websockets import WebSocketDisconnect

from langgrasp.calibration.io import save_calibration
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.errors import InputError
from langgrasp.runtime import oracle
from langgrasp.runtime.cameras import SyntheticCamera
from langgrasp.runtime.config import robot_config_from_dict
from langgrasp.runtime.demo import DEMO_BUNDLE, demo_calibration, demo_scene_config, workspace_box
from langgrasp.runtime.engine import Detection
from langgrasp.runtime.pick import PickLoop, build_loop
from langgrasp.runtime.sim.arm import ArmSim
from langgrasp.runtime.sim.robotiq import RobotiqSim
from langgrasp.runtime.web.app import create_app
from langgrasp.runtime.web.bridge import LoopBridge
from langgrasp.runtime.web.commands import register_cli
from langgrasp.runtime.web.errors import http_error_response
from langgrasp.runtime.web.events import EventHub
from langgrasp.runtime.web.server import WebServer
from langgrasp.runtime.web.settings import MAX_COMMAND_CHARS, WebSettings

SEED = 3  # a bar with five grasps (tests/test_pick.py)
SCENE = SceneConfig().resized(320, 240)
WIDTH, HEIGHT = 320, 240
LOCAL = "http://127.0.0.1"
TOKEN = "test-token-0123456789abcdef"
WAIT_S = 30.0  # generous limit for waits on events (never a timing assertion)
FAST_M_S, SLOW_M_S = 20.0, 0.02  # simulated arm speeds: a whole pick at once / seconds per move


class GroundTruthDetector(oracle.GroundTruthDetector):
    """The scene oracle; ``gate`` (when set) holds each detection until opened."""

    def __init__(self, camera: SyntheticCamera) -> None:
        super().__init__(camera)
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def detect(self, rgb: np.ndarray, command: str) -> Detection:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S)
        return super().detect(rgb, command)


@dataclass
class Rig:
    loop: PickLoop
    detector: GroundTruthDetector
    gripper: RobotiqSim
    arm: ArmSim


def _robot_config(tmp_path: Path, gripper_port: int, arm_port: int) -> dict:
    calibration = save_calibration(tmp_path / "calibration.json", demo_calibration(SCENE))
    return {
        "camera": {"kind": "synthetic", "seed": SEED, "width": WIDTH, "height": HEIGHT},
        "calibration": {"path": str(calibration)},
        "gripper": {
            "poll_period_s": 0.005,
            "modbus": {
                "transport": "rtu-over-tcp",
                "port": gripper_port,
                "device_id": 9,
                "timeout_s": 2.0,
            },
        },
        "arm": {
            "poll_interval_s": 0.005,
            "ack_timeout_s": 5.0,
            "modbus": {"port": arm_port, "timeout_s": 2.0},
        },
        "motion": {"travel_speed": 1.0, "approach_speed": 1.0, "poll_interval_s": 0.005},
        "safety": {
            "workspace_min_m": [0.05, -0.4, -0.05],
            "workspace_max_m": [0.85, 0.4, 0.5],
            "max_speed": 1.0,
            "watchdog_timeout_s": 10.0,
        },
        "place": {"position_m": [0.45, -0.3, 0.0], "release_height_m": 0.08},
        "loop": {"frame_timeout_s": 0.2, "camera_reconnect_attempts": 0},
        "audit": {"path": "audit.jsonl"},
    }


def _rig(tmp_path: Path, arm_speed_m_s: float):
    gripper = RobotiqSim(finger_speed_m_s=5.0, activation_s=0.01)
    arm = ArmSim(speed_m_s=arm_speed_m_s, angular_speed_rad_s=100.0 * arm_speed_m_s)
    servers = [gripper.serve(), arm.serve()]
    loop = None
    try:
        data = _robot_config(tmp_path, servers[0].port, servers[1].port)
        config = robot_config_from_dict(data, tmp_path / "robot.toml")
        camera = SyntheticCamera(SEED, SCENE)
        detector = GroundTruthDetector(camera)
        loop = build_loop(config, execute=True, detector=detector, camera=camera)
        yield Rig(loop, detector, gripper, arm)
    finally:
        if loop is not None:
            if loop.busy:
                loop.stop()
            loop.close()
        for server in servers:
            server.stop()


@pytest.fixture
def rig(tmp_path):
    yield from _rig(tmp_path, FAST_M_S)


@pytest.fixture
def slow_rig(tmp_path):
    """An arm that needs seconds per move, so a test can act while it moves."""
    yield from _rig(tmp_path, SLOW_M_S)


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def client(loop: PickLoop, **settings) -> TestClient:
    return TestClient(create_app(loop, WebSettings(port=0, **settings)), base_url=LOCAL)


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not an image"
    return image


# -- the pick over HTTP -------------------------------------------------------------------------


def test_command_confirm_next_and_a_whole_pick(rig):
    with client(rig.loop) as api:
        reply = api.post("/api/command", json={"text": "um, pick up the bar please"}).json()
        assert reply["ok"] and reply["state"] == "awaiting_confirm", reply
        assert [c["rank"] for c in reply["data"]["candidates"]] == [1, 2, 3, 4, 5]
        state = api.get("/api/state", params={"refresh": "true"}).json()
        assert state["state"] == "awaiting_confirm" and state["offered"] == 1
        assert state["arm"]["state"] == "idle" and state["gripper"]["state"] != "unknown"
        assert state["detection_id"] == 1
        assert state["detection"]["target"] == "the bar"
        detection = state["detection"]
        assert detection["mask_pixels"] > 0 and "detect" in detection["timings_ms"]
        pose = state["candidates"][0]["pose"]
        assert len(pose["position_m"]) == 3 and np.asarray(pose["T_base_grasp"]).shape == (4, 4)
        assert state["camera"]["connected"] and state["arm"]["present"]

        reply = api.post("/api/next").json()
        assert reply["ok"] and "#2" in reply["message"]
        second = api.get("/api/state").json()
        assert second["offered"] == 2
        rig.gripper.set_object(second["candidates"][1]["pose"]["opening_m"] * 0.6)
        reply = api.post("/api/confirm").json()
        assert reply["ok"] and reply["message"].startswith("confirmed"), reply
        assert rig.loop.wait_until_settled(WAIT_S)

        state = api.get("/api/state").json()
        assert state["state"] == "idle" and state["report"]["outcome"] == "placed"
        assert state["report"]["chosen"]["rank"] == 2
        pregrasp = np.asarray(second["candidates"][1]["pose"]["T_base_pregrasp"])
        np.testing.assert_allclose(rig.arm.targets[0][:3, 3], pregrasp[:3, 3], atol=2e-4)
        assert not api.post("/api/confirm").json()["ok"]  # nothing offered any more

        writes = api.get("/api/audit", params={"n": 500, "event": "device_write"}).json()
        assert {r["device"] for r in writes["records"]} == {"arm", "gripper"}
        states = api.get("/api/audit", params={"event": "state"}).json()["records"]
        assert states and all(r["event"] == "state" for r in states)
        assert api.post("/api/command", json={"text": "status"}).json()["ok"]
        tagged = api.get("/api/audit", params={"event": "http_command"}).json()["records"]
        assert [r["text"] for r in tagged][:2] == ["um, pick up the bar please", "next"]
        assert all(r["source"] == "http" for r in tagged)


def test_busy_robot_answers_409_and_stop_writes_the_arm_stop_register(slow_rig):
    rig = slow_rig
    with client(rig.loop) as api:
        assert api.post("/api/command", json={"text": "pick the bar"}).json()["ok"]
        assert api.post("/api/confirm").json()["ok"]
        wait_for(lambda: rig.arm.state.name == "MOVING", "the arm to move")
        for path, body in (("/api/command", {"text": "pick the bar"}), ("/api/home", None)):
            response = api.post(path, json=body)
            assert response.status_code == 409, response.text
            error = response.json()
            assert error["error"] == "busy" and "stop" in error["detail"]
        assert rig.arm.stops == 0
        reply = api.post("/api/stop").json()
        assert reply["ok"] and reply["state"] == "stopped"
        assert rig.arm.stops >= 1 and rig.arm.state.name == "STOPPED"
        assert rig.loop.wait_until_settled(WAIT_S)
        state = api.get("/api/state").json()
        assert state["state"] == "stopped" and state["report"]["outcome"] == "stopped"
        assert len(rig.arm.targets) == 1  # only the pre-grasp was ever sent
        # "stop" in any wording through the command endpoint is the same stop
        reply = api.post("/api/command", json={"text": "HALT!"}).json()
        assert reply["ok"] and reply["state"] == "stopped"
        assert rig.arm.stops >= 2
        commands = api.get("/api/audit", params={"event": "command"}).json()["records"]
        assert commands[-1]["text"] == "HALT!" and commands[-1]["source"] == "http"


def test_overlay_and_live_pictures(rig):
    with client(rig.loop) as api:
        before = api.get("/api/overlay")  # nothing detected yet: a live frame
        assert before.status_code == 200 and before.headers["x-detection-id"] == "0"
        plain = decode(before.content)
        assert plain.shape == (HEIGHT, WIDTH, 3)
        assert api.post("/api/command", json={"text": "pick the bar"}).json()["ok"]
        for fmt, media in (("jpeg", "image/jpeg"), ("png", "image/png")):
            response = api.get("/api/overlay", params={"format": fmt})
            assert response.status_code == 200 and response.headers["content-type"] == media
            assert response.headers["x-detection-id"] == "1"
            assert decode(response.content).shape == (HEIGHT, WIDTH, 3)
        drawn = decode(api.get("/api/overlay", params={"format": "png"}).content)
        mask = rig.loop.last_detection.mask
        changed = np.abs(drawn.astype(int) - plain.astype(int)).sum(axis=2) > 30
        assert changed[mask].mean() > 0.5  # the target is tinted ...
        assert changed.mean() < 0.5  # ... the rest is the camera image
        live = api.get("/api/live", params={"format": "png"})
        assert live.status_code == 200 and decode(live.content).shape == (HEIGHT, WIDTH, 3)
        bad = api.get("/api/overlay", params={"format": "gif"})
        assert bad.status_code == 422 and bad.json()["error"] == "validation_error"


def test_live_view_off_and_camera_failures_are_json(rig):
    with client(rig.loop, live_fps=0) as api:
        response = api.get("/api/overlay")
        assert response.status_code == 404 and response.json()["error"] == "no_detection"
        assert api.get("/api/live").json()["error"] == "live_off"
        assert api.get("/api/state").json()["web"]["live_fps"] == 0
    rig.loop.camera.stall()
    with client(rig.loop) as api:
        response = api.get("/api/live")
        assert response.status_code == 503 and response.json()["error"] == "camera_unavailable"


# -- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status", "error", "needle"),
    [
        ({"content": b'{"text": "pick', "headers": {"content-type": "application/json"}},
         422, "malformed_json", "not valid JSON"),
        ({"json": {"text": 5}}, 422, "validation_error", "text: Input should be a valid string"),
        ({"json": {"text": "pick the bar", "speed": 2}}, 422, "validation_error",
         "unknown field 'speed'"),
        ({"json": {"text": "   "}}, 422, "validation_error", "the command is empty"),
        ({"json": {"text": "x" * (MAX_COMMAND_CHARS + 1)}}, 422, "validation_error",
         f"longer than {MAX_COMMAND_CHARS} characters"),
        ({"json": ["pick the bar"]}, 422, "validation_error", "JSON object"),
        ({}, 422, "validation_error", "needs a JSON body"),
        ({"content": b"pick the bar", "headers": {"content-type": "text/plain"}},
         415, "unsupported_media_type", "application/json"),
        ({"content": b"{" + b" " * 20_000 + b"}", "headers": {"content-type": "application/json"}},
         413, "too_large", "larger than 16384 bytes"),
        ({"content": (c for c in [b'{"text": "', b"x" * 20_000, b'"}']),
          "headers": {"content-type": "application/json"}}, 413, "too_large", "larger than"),
        ({"content": b'{"text": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
         400, "bad_request", "UTF-8 JSON object"),
        ({"content": b'{"text": "status"}',
          "headers": {"content-type": "application/json", "content-length": "-1"}},
         400, "bad_request", "Content-Length"),
    ],
    ids=["malformed", "type", "unknown-field", "empty", "too-long", "not-object", "no-body",
         "text-plain", "oversized", "oversized-chunked", "not-utf8", "negative-length"],
)  # fmt: skip
def test_bad_command_requests_get_json_errors(rig, kwargs, status, error, needle):
    with client(rig.loop) as api:
        response = api.post("/api/command", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and needle in body["detail"], body
    assert rig.loop.last_report is None  # nothing reached the loop


def test_routing_errors_and_internal_errors_are_json(rig, monkeypatch):
    with client(rig.loop) as api:
        cases = [
            (api.get("/api/nothing"), 404, "not_found"),
            (api.get("/api/stop"), 405, "method_not_allowed"),
            (api.get("/api/audit", params={"n": 0}), 422, "validation_error"),
            (api.get("/api/audit", params={"event": "../etc"}), 422, "validation_error"),
            (api.get("/static/%2e%2e/app.py"), 404, "not_found"),  # httpx keeps %2e as is
        ]
        for response, status, error in cases:
            assert response.status_code == status, response.text
            assert response.json()["error"] == error and response.json()["detail"]
        assert "use POST" in api.get("/api/stop").json()["detail"]
    monkeypatch.setattr(rig.loop, "status", lambda **_: 1 / 0)
    app = create_app(rig.loop, WebSettings(port=0))
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as api:
        response = api.get("/api/state")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and "GET /api/state" in body["detail"]
    assert "ZeroDivision" not in body["detail"] and "division" not in body["detail"]


def test_http_errors_outside_the_standard_statuses_keep_their_shape():
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}
    for status, error in ((418, "i'm_a_teapot"), (599, "error")):  # 599: not in HTTPStatus
        exc = StarletteHTTPException(status, detail="odd")
        response = http_error_response(Request(scope), exc)
        assert response.status_code == status
        assert json.loads(response.body) == {"error": error, "detail": "odd"}


def test_openapi_schema_lists_the_endpoints(rig):
    with client(rig.loop) as api:
        schema = api.get("/api/openapi.json").json()
        page = api.get("/")
    paths = schema["paths"]
    for path in ("/api/command", "/api/confirm", "/api/next", "/api/stop", "/api/home",
                 "/api/open", "/api/activate"):  # fmt: skip
        assert "post" in paths[path], path
    for path in ("/api/state", "/api/overlay", "/api/live", "/api/events", "/api/audit"):
        assert "get" in paths[path], path
    request = schema["components"]["schemas"]["CommandRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["text"]["maxLength"] == MAX_COMMAND_CHARS
    assert "409" in paths["/api/command"]["post"]["responses"]
    # no endpoint takes a file path
    for operations in paths.values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                assert "path" not in parameter["name"].lower()
    assert page.status_code == 200 and "langgrasp console" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


# -- security -----------------------------------------------------------------------------------


def test_non_loopback_bind_without_token_is_refused_before_anything_opens(tmp_path):
    for host in ("0.0.0.0", "192.168.1.20", "robot.example.com"):
        with pytest.raises(InputError, match=r"refusing to listen on .* access token"):
            WebSettings(host=host)
    with pytest.raises(InputError, match="at least 16"):
        WebSettings(host="0.0.0.0", token="short")
    assert WebSettings().loopback and WebSettings(host="::1").loopback
    assert "token" not in repr(WebSettings(token=TOKEN))  # never printed
    # `langgrasp serve --host 0.0.0.0` refuses before reading robot.toml (which does not exist)
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    missing = tmp_path / "missing.toml"
    args = parser.parse_args(["serve", "--config", str(missing), "--host", "0.0.0.0"])
    with pytest.raises(InputError, match=r"refusing to listen on 0\.0\.0\.0"):
        args.func(args)
    args = parser.parse_args(["serve", "--config", str(missing), "--token-env", "LG_NO_SUCH_VAR"])
    with pytest.raises(InputError, match="LG_NO_SUCH_VAR is not set"):
        args.func(args)


def test_loopback_without_token_guards_host_and_origin(rig):
    with client(rig.loop) as api:
        assert api.get("/api/state").status_code == 200
        response = api.post("/api/stop", headers={"origin": "http://evil.example"})
        assert response.status_code == 403 and response.json()["error"] == "cross_origin"
        assert rig.arm.stops == 0
        assert api.post("/api/stop", headers={"origin": LOCAL}).status_code == 200
        assert api.post("/api/stop", headers={"origin": f"{LOCAL}:80"}).status_code == 200
        for other in ("https://127.0.0.1", "http://127.0.0.1:8080", "null", "http://[::1"):
            response = api.post("/api/stop", headers={"origin": other})
            assert response.status_code == 403, other
        # pictures and streams: never for another site's page, never embeddable elsewhere
        live = api.get("/api/live")
        assert live.headers["cross-origin-resource-policy"] == "same-origin"
        assert api.get("/api/live", headers={"sec-fetch-site": "same-origin"}).status_code == 200
        for site in ("cross-site", "same-site"):
            for path in ("/api/live", "/api/overlay", "/api/stream.mjpg", "/api/events"):
                response = api.get(path, headers={"sec-fetch-site": site})
                assert response.status_code == 403 and response.json()["error"] == "cross_site"
        with pytest.raises(WebSocketDisconnect) as closed, api.websocket_connect("/api/events"):
            pass
        assert closed.value.code == 1008
    rebinding = TestClient(
        create_app(rig.loop, WebSettings(port=0)), base_url="http://evil.example"
    )
    with rebinding as api:
        response = api.get("/api/state")
    assert response.status_code == 403 and response.json()["error"] == "forbidden_host"


def test_token_is_required_and_stop_is_never_queued(slow_rig, caplog):
    rig = slow_rig
    rig.detector.gate = threading.Event()  # the detection waits until the test opens it
    settings = WebSettings(host="0.0.0.0", port=0, token=TOKEN, worker_threads=1)
    with caplog.at_level(logging.WARNING), WebServer(rig.loop, settings) as server:
        assert "reachable from the network" in caplog.text
        url = f"http://127.0.0.1:{server.port}"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, timeout=WAIT_S) as http:
            response = http.get("/api/state")
            assert response.status_code == 401 and response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
            response = http.get("/api/state", headers={"Authorization": "Bearer wrong-token"})
            assert response.status_code == 403 and response.json()["error"] == "forbidden"
            assert http.post("/api/stop").status_code == 401
            assert rig.arm.stops == 0
            assert http.get("/").status_code == 200  # the page itself asks for the token
            assert http.get("/api/state", headers={"X-Langgrasp-Token": TOKEN}).status_code == 200
            # an authenticated client is not a page from elsewhere: its Origin does not matter
            foreign = {**bearer, "Origin": "http://console.example:9000"}
            assert http.post("/api/command", json={"text": "status"}, headers=foreign).is_success
            assert (
                http.post("/api/stop", headers={"Origin": "http://evil.example"}).status_code == 401
            )

            # A pick holds the only worker thread; a state request queues behind it.
            results: dict[str, httpx.Response] = {}

            def call(name: str, method: str, path: str, **kwargs) -> threading.Thread:
                def run() -> None:
                    with httpx.Client(base_url=url, timeout=WAIT_S) as other:
                        results[name] = other.request(method, path, headers=bearer, **kwargs)

                thread = threading.Thread(target=run)
                thread.start()
                return thread

            pick = call("pick", "POST", "/api/command", json={"text": "pick the bar"})
            assert rig.detector.entered.wait(WAIT_S)
            state = call("state", "GET", "/api/state")
            home = call("home", "POST", "/api/home")  # sent before the stop, queued
            time.sleep(0.1)  # let both requests reach the server and queue
            stop = http.post("/api/stop", headers=bearer)
            assert stop.status_code == 200 and stop.json()["state"] == "stopped"
            assert pick.is_alive() and state.is_alive()  # both still waiting: stop did not
            assert rig.arm.stops >= 1  # the arm stop register was written
            rig.detector.gate.set()
            for thread in (pick, state, home):
                thread.join(WAIT_S)
    assert not results["pick"].json()["ok"]  # the stop ended the pick before anything moved
    assert results["state"].status_code == 200
    # the home sent before the stop does not run after it
    assert results["home"].status_code == 409, results["home"].text
    assert results["home"].json()["error"] == "stopped_after"
    assert rig.arm.targets == [] and rig.arm.state.name != "MOVING"
    assert rig.loop.state.value == "stopped"  # a home would have changed it


def test_a_slow_stop_does_not_hold_up_the_server(rig, monkeypatch):
    gate, entered = threading.Event(), threading.Event()
    stop = rig.loop.stop

    def gated_stop():
        entered.set()
        assert gate.wait(WAIT_S)
        return stop()

    monkeypatch.setattr(rig.loop, "stop", gated_stop)  # a device that answers late
    with WebServer(rig.loop, WebSettings(port=0)) as server:
        replies: dict[str, httpx.Response] = {}

        def send_stop() -> None:
            with httpx.Client(base_url=server.url, timeout=WAIT_S) as other:
                replies["stop"] = other.post("/api/stop")

        stopper = threading.Thread(target=send_stop)
        stopper.start()
        try:
            assert entered.wait(WAIT_S)
            with httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
                # answered while the stop still waits on the device (it would hang otherwise)
                assert http.get("/api/audit", params={"n": 1}).status_code == 200
                assert http.get("/").status_code == 200
                assert stopper.is_alive()
        finally:
            gate.set()
            stopper.join(WAIT_S)
    assert replies["stop"].json()["state"] == "stopped"


class RecordingHub(EventHub):
    """Keeps what is published instead of sending it."""

    def __init__(self) -> None:
        super().__init__(8, 1.0)
        self.published: list[tuple[str, dict]] = []

    def publish(self, event: str, data: dict) -> None:
        self.published.append((event, data))


def test_the_detection_event_is_published_even_when_a_reader_looks_first(rig, monkeypatch):
    hub = RecordingHub()
    bridge = LoopBridge(rig.loop, WebSettings(port=0), hub)
    bridge.attach()
    record = rig.loop.audit.record
    readings: list[int] = []

    def record_and_read(event: str, **fields):
        if event == "detection":  # a GET /api/state at the worst moment
            readings.append(bridge.state()["detection_id"])
        return record(event, **fields)

    monkeypatch.setattr(rig.loop.audit, "record", record_and_read)
    try:
        assert rig.loop.command("pick the bar").ok
    finally:
        bridge.detach()
    detections = [data for event, data in hub.published if event == "detection"]
    assert readings and [d["detection_id"] for d in detections] == [1]
    assert bridge.detection_id() == 1 and detections[0]["grasps"] == 5


# -- streams on a real server -------------------------------------------------------------------


def _read_events(url: str, wanted: str, events: list, connected: threading.Event) -> None:
    with httpx.Client(timeout=WAIT_S) as http, http.stream("GET", url + "api/events") as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.split(":", 1)[1])))
                connected.set()
                if kind == wanted:
                    return


def test_events_and_mjpeg_stream_on_a_real_server(rig):
    with WebServer(rig.loop, WebSettings(port=0)) as server:
        events: list = []
        connected = threading.Event()
        reader = threading.Thread(
            target=_read_events, args=(server.url, "detection", events, connected)
        )
        reader.start()
        assert connected.wait(WAIT_S)  # "hello" arrived: the stream is subscribed
        with httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
            assert http.post("/api/command", json={"text": "pick the bar"}).json()["ok"]
            reader.join(WAIT_S)
            assert not reader.is_alive()
            with http.stream("GET", "/api/stream.mjpg") as stream:
                assert stream.headers["content-type"].startswith("multipart/x-mixed-replace")
                mjpeg = b""
                for chunk in stream.iter_bytes():
                    mjpeg += chunk
                    if mjpeg.count(b"--frame") >= 2:
                        break
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "hello" and events[0][1]["state"] == "idle"
    states = [data["state"] for kind, data in events if kind == "state"]
    assert states == ["detecting", "awaiting_confirm"]
    assert events[-1] == ("detection", events[-1][1]) and events[-1][1]["detection_id"] == 1
    first = mjpeg.split(b"\r\n\r\n", 1)[1]
    assert decode(first[: first.index(b"\r\n--frame")]).shape == (HEIGHT, WIDTH, 3)


# -- langgrasp serve ----------------------------------------------------------------------------

SERVE = """
import argparse, sys
from langgrasp.runtime.web.commands import register_cli
parser = argparse.ArgumentParser()
register_cli(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""
"""`langgrasp serve ARGS` without langgrasp.cli (which registers the command separately)."""


def test_serve_runs_the_loop_from_robot_toml_and_ctrl_c_stops_the_arm(tmp_path):
    scene_config = demo_scene_config()
    with SyntheticCamera(1, scene_config) as camera:
        command = camera.read().ground_truth.text  # the demo's scene, as the child renders it
    gripper = RobotiqSim(finger_speed_m_s=5.0, activation_s=0.01)
    arm = ArmSim(speed_m_s=SLOW_M_S)
    servers = [gripper.serve(), arm.serve()]
    low, high = workspace_box(scene_config)
    save_calibration(tmp_path / "calibration.json", demo_calibration(scene_config))
    (tmp_path / "robot.toml").write_text(
        f"""
[camera]
kind = "synthetic"
seed = 1
width = {scene_config.width}
height = {scene_config.height}
[bundle]
path = "{DEMO_BUNDLE}"
providers = ["cpu"]
[calibration]
path = "calibration.json"
[gripper.modbus]
transport = "rtu-over-tcp"
port = {servers[0].port}
device_id = 9
[arm.modbus]
port = {servers[1].port}
[safety]
workspace_min_m = {list(low)}
workspace_max_m = {list(high)}
"""
    )
    argv = ["--config", str(tmp_path / "robot.toml"), "--execute", "--port", "0"]
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = child.stdout.readline()
        assert "langgrasp console on http://127.0.0.1:" in line, line + child.stderr.read()
        url = line.split(" on ", 1)[1].split(";", 1)[0].strip()
        with httpx.Client(base_url=url, timeout=WAIT_S) as http:
            reply = http.post("/api/command", json={"text": command}).json()
            assert reply["ok"], reply
            assert http.post("/api/confirm").json()["ok"]
        wait_for(lambda: arm.state.name == "MOVING", "the arm to move")
        assert arm.stops == 0
        child.send_signal(signal.SIGINT)  # Ctrl-C
        assert child.wait(WAIT_S) == 0, child.stderr.read()
        assert arm.stops >= 1 and arm.state.name == "STOPPED"
        stderr = child.stderr.read()
        assert "EXECUTE" in stderr and "Traceback" not in stderr, stderr
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for server in servers:
            server.stop()
