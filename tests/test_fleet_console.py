"""The fleet console: heartbeats through the detector function into the fleet table, the console function's
routes over the moto server, and the local adapter's authentication (issue 29, item 5)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import boto3
import httpx
import msgpack
import pytest

from cloud.local.console_adapter import api_event
from detector_lambda.console import FleetConsole, load_console_settings
from detector_lambda.records import HeartbeatRecord, decode_any
from services.sampler.heartbeat import per_server, server_id, summarise
from shared.schemas import Health
from tests.fixtures.cloud import CloudResources, base64_of
from tests.fixtures.fleet import console_environ, detector_function, heartbeat, put_event, running_console, send, send_frames

TOKEN = "fleet-test-token-0123456789"
ROUTES = ["/api/sites", "/api/sites/site-a/frames", "/api/sites/site-a/alerts", "/api/sites/site-a/events",
          "/api/sites/site-a/frames?limit=3", "/api/sites/nowhere/alerts"]


def console_of(resources: CloudResources, now: float | None = None) -> FleetConsole:
    settings = load_console_settings(console_environ(resources))
    clock = (lambda: now) if now is not None else time.time
    return FleetConsole(settings, boto3.client("dynamodb"), boto3.client("s3"), clock)


def get(console: FleetConsole, path: str, query: dict[str, str] | None = None, method: str = "GET",
        authorised: bool = True) -> tuple[int, Any]:
    context: dict[str, Any] = {"http": {"method": method}}
    if authorised:
        context["authorizer"] = {"jwt": {"claims": {"sub": "operator-1"}}}
    answer = console.handle({"rawPath": path, "queryStringParameters": query, "requestContext": context})
    return answer["statusCode"], json.loads(answer["body"])


def fleet_items(resources: CloudResources) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=resources.fleet_table)["Items"]


def test_a_heartbeat_record_becomes_one_fleet_item_and_never_a_frames_table_item(cloud_resources: CloudResources) -> None:
    function = detector_function(cloud_resources)
    now = time.time()
    assert send(function, heartbeat("site-a", "edge-1", now - 60).encode())["batchItemFailures"] == []
    assert send(function, heartbeat("site-a", "edge-1", now, camera_state="reconnecting").encode())["batchItemFailures"] == []
    # a late (spooled or re-delivered) heartbeat never hides the newer one
    assert send(function, heartbeat("site-a", "edge-1", now - 30).encode())["batchItemFailures"] == []

    [item] = fleet_items(cloud_resources)
    assert item["kind"]["S"] == "heartbeat" and item["sk"]["S"] == "site-a#edge-1"
    assert float(item["sent_ts"]["N"]) == pytest.approx(now, abs=1e-3)
    assert item["cameras"]["L"][0]["M"]["state"]["S"] == "reconnecting"
    assert function.counters == {"heartbeats": 2, "stale_heartbeats": 1}
    assert boto3.client("dynamodb").scan(TableName=cloud_resources.table)["Items"] == []


def test_a_malformed_heartbeat_is_counted_and_dropped_not_dead_lettered(cloud_resources: CloudResources) -> None:
    function = detector_function(cloud_resources)
    bad_site = msgpack.packb({"schema": "heartbeat", "v": 1, "site": "no spaces/here", "server": "edge-1",
                              "sent_ts": time.time(), "interval_s": 30.0})
    too_many = msgpack.packb({"schema": "heartbeat", "v": 1, "site": "site-a", "server": "edge-1", "sent_ts": time.time(),
                              "interval_s": 30.0, "cameras": [{"camera_id": f"c{i}", "state": "ok"} for i in range(65)]})
    good = heartbeat("site-b", "edge-9", time.time()).encode()

    response = send(function, bad_site, too_many, good)

    assert response["batchItemFailures"] == []
    assert function.counters["dropped_heartbeats"] == 2 and function.counters["heartbeats"] == 1
    assert [item["sk"]["S"] for item in fleet_items(cloud_resources)] == ["site-b#edge-9"]
    assert cloud_resources.drain(cloud_resources.dead_letter_queue_url) == []


def test_without_a_fleet_table_heartbeats_are_counted_drops(cloud_resources: CloudResources) -> None:
    cloud_resources.fleet_table = ""
    function = detector_function(cloud_resources)
    assert send(function, heartbeat("site-a", "edge-1", time.time()).encode())["batchItemFailures"] == []
    assert function.counters["dropped_heartbeats"] == 1


def test_sites_lists_every_site_with_its_servers_and_marks_the_silent_one_stale(cloud_resources: CloudResources) -> None:
    function = detector_function(cloud_resources)
    now = 1_800_000_000.0
    send(function, heartbeat("site-a", "edge-1", now - 10).encode(), heartbeat("site-a", "edge-2", now - 95).encode(),
         heartbeat("site-b", "edge-1", now - 5, camera_state="degraded").encode())

    status, body = get(console_of(cloud_resources, now), "/sites")

    assert status == 200
    states = {site["site"]: (site["state"], {s["server"]: s["state"] for s in site["servers"]}) for site in body["sites"]}
    assert states == {"site-a": ("stale", {"edge-1": "ok", "edge-2": "stale"}), "site-b": ("degraded", {"edge-1": "degraded"})}
    edge_2 = body["sites"][0]["servers"][1]
    assert edge_2["age_s"] == 95.0 and edge_2["interval_s"] == 30 and edge_2["cameras"][0]["camera_id"] == "cam1"


def test_frames_alerts_and_events_are_per_site_with_pictures_that_load(cloud_resources: CloudResources) -> None:
    function = detector_function(cloud_resources)
    now = time.time()
    send_frames(function, "site-a", ["cam1", "cam2"], per_camera=2, start_ts=now - 100)
    send_frames(function, "site-b", ["wide"], per_camera=1, start_ts=now - 50)
    put_event(cloud_resources, "site-a", "cam1", "ev-1", now - 20, "loitering")
    console = console_of(cloud_resources)

    status, frames = get(console, "/sites/site-a/frames", {"limit": "3"})
    assert status == 200 and len(frames["frames"]) == 3
    times = [frame["capture_time"] for frame in frames["frames"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert {frame["camera_id"] for frame in frames["frames"]} <= {"cam1", "cam2"}
    assert frames["frames"][0]["labels"][0]["name"] == "Person"
    picture = httpx.get(frames["frames"][0]["image_url"], timeout=10)
    assert picture.status_code == 200 and picture.content[:3] == b"\xff\xd8\xff"

    _, alerts = get(console, "/sites/site-a/alerts")  # one alert per camera: the cooldown holds the rest
    assert sorted(a["camera_id"] for a in alerts["alerts"]) == ["cam1", "cam2"]
    assert all(a["alerted"] == ["Person"] for a in alerts["alerts"])

    _, site_b = get(console, "/sites/site-b/frames")
    assert [frame["camera_id"] for frame in site_b["frames"]] == ["wide"]
    _, events = get(console, "/sites/site-a/events")
    assert [(e["event_id"], e["rule"]) for e in events["events"]] == [("ev-1", "loitering")]
    assert get(console, "/sites/site-b/events")[1]["events"] == []


def test_an_alert_stays_listed_after_more_than_a_thousand_quiet_frames(cloud_resources: CloudResources) -> None:
    """Alerts come from a sparse index, not from filtering the site's latest frames: however many quiet frames
    follow, the alert is one Query away."""
    function = detector_function(cloud_resources)
    now = time.time()
    send_frames(function, "site-q", ["gate"], per_camera=1, start_ts=now - 5000)
    table = boto3.resource("dynamodb").Table(cloud_resources.table)
    with table.batch_writer() as batch:  # 1,200 later frames without an alert, as the detector stores them
        for index in range(1200):
            batch.put_item(Item={"pk": f"frame#gate-quiet-{index}", "site": "site-q", "camera_id": "gate",
                                 "capture_ts": Decimal(str(round(now - 4000 + index, 3))), "alerts": []})
    console = console_of(cloud_resources)
    _, alerts = get(console, "/sites/site-q/alerts")
    assert [(a["camera_id"], a["alerted"]) for a in alerts["alerts"]] == [("gate", ["Person"])]
    assert get(console, "/sites/site-a/alerts")[1]["alerts"] == []  # per site


@pytest.mark.parametrize(("path", "query", "status"), [
    ("/sites/bad site/frames", None, 400),
    ("/sites/" + "a" * 65 + "/frames", None, 400),
    ("/sites/site-a/frames", {"limit": "0"}, 400),
    ("/sites/site-a/frames", {"limit": "51"}, 400),
    ("/sites/site-a/frames", {"limit": "-1"}, 400),
    ("/sites/site-a/frames", {"limit": "ten"}, 400),
    ("/sites/site-a/secrets", None, 404),
    ("/admin", None, 404),
])
def test_bad_requests_get_a_json_error(cloud_resources: CloudResources, path: str, query: dict[str, str] | None,
                                       status: int) -> None:
    answer_status, body = get(console_of(cloud_resources), path, query)
    assert answer_status == status and body["error"]


def test_the_function_itself_refuses_a_request_no_authorizer_admitted(cloud_resources: CloudResources) -> None:
    console = console_of(cloud_resources)
    assert get(console, "/sites", authorised=False) == (401, {"error": "not authenticated"})
    assert get(console, "/sites", method="POST")[0] == 405


def test_every_route_refuses_requests_without_the_token(cloud_resources: CloudResources) -> None:
    with running_console(cloud_resources, TOKEN) as url:
        for route in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN},
                            {"Authorization": f"Basic {TOKEN}"}):
                answer = httpx.get(url + route, headers=headers, timeout=10)
                assert answer.status_code == 401, (route, headers)
                assert answer.headers["www-authenticate"] == "Bearer"
            assert httpx.post(url + route, timeout=10).status_code == 401
            assert httpx.get(url + route, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200
        # the page itself holds no data; it is served with a policy that allows no inline script
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text


def test_the_adapter_hands_the_function_an_http_api_v2_event(cloud_resources: CloudResources) -> None:
    with running_console(cloud_resources, TOKEN) as url:
        answer = httpx.get(url + "/api/sites/site-a/frames?limit=2", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"site": "site-a", "frames": []}
    assert answer.headers["cache-control"] == "no-store"
    assert api_event.__doc__ and "2.0" in api_event.__doc__


def test_the_sampler_summary_keeps_the_newest_report_of_each_camera_and_service() -> None:
    reports = [
        Health(service="capture", instance="capture-1", state="ok", ts=100.0, camera_id="cam1"),
        Health(service="capture", instance="capture-1", state="reconnecting", ts=110.0, camera_id="cam1", message="rtsp lost"),
        Health(service="edge-infer", instance="infer-1", state="degraded", ts=90.0),
        Health(service="edge-infer", instance="infer-1", state="ok", ts=105.0),
    ]
    beat = summarise(reversed(reports), "site-a", server_id("edge 1.example"), 30.0, now=120.0)
    assert beat.server == "edge-1.example"
    assert [(c.camera_id, c.state, c.message) for c in beat.cameras] == [("cam1", "reconnecting", "rtsp lost")]
    assert [(s.service, s.state, s.age_s) for s in beat.services] == [("edge-infer", "ok", 15.0)]
    record = {"kinesis": {"sequenceNumber": "1", "partitionKey": "site-a/heartbeat/edge-1", "data": base64_of(beat.encode())}}
    decoded = decode_any(record)
    assert isinstance(decoded, HeartbeatRecord) and decoded.heartbeat == beat


def test_a_site_on_two_servers_sends_one_heartbeat_per_live_server_and_none_for_a_quiet_one() -> None:
    servers = {"edge-1": ["wide", "north"], "edge-2": ["south"]}
    now = 1000.0
    reports = [
        Health(service="capture", instance="wide", camera_id="wide", state="ok", ts=now - 1),
        Health(service="capture", instance="north", camera_id="north", state="ok", ts=now - 2),
        Health(service="edge_infer", instance="edge-1-pod", state="ok", ts=now - 1, counters={"wide.analysed": 5.0, "north.analysed": 3.0}),
        Health(service="compositor", instance="compositor-pod", state="ok", ts=now - 1),
        # edge-2 went quiet 40 s ago: its last reports are still in the stream
        Health(service="capture", instance="south", camera_id="south", state="ok", ts=now - 40),
        Health(service="edge_infer", instance="edge-2-pod", state="ok", ts=now - 40, counters={"south.analysed": 9.0}),
    ]
    split = per_server(reports, servers, "sampler-host", now)
    assert set(split) == {"edge-1", "sampler-host"}, "a quiet server sends no heartbeat: the console shows it stale"
    edge_1 = summarise(split["edge-1"], "site-a", "edge-1", 30.0, now)
    assert [c.camera_id for c in edge_1.cameras] == ["north", "wide"]
    assert [s.instance for s in edge_1.services] == ["edge-1-pod"]
    assert [s.service for s in summarise(split["sampler-host"], "site-a", "sampler-host", 30.0, now).services] == ["compositor"]

    reports.append(Health(service="capture", instance="south", camera_id="south", state="ok", ts=now + 5))
    assert set(per_server(reports, servers, "sampler-host", now + 6)) == {"edge-1", "edge-2", "sampler-host"}
