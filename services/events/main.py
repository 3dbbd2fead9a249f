"""Zones, rules and events on the edge: edge detections → tracks → rule matches → events with a clip.

Reads the detection stream (consumer group ``events``), keeps tracks per camera, evaluates the site
file's rules (enter, dwell, count, cross; schedules in the site's time zone) and stores each event
in SQLite with its best snapshot and a clip remuxed from the camera's own stream (pre/post-roll),
sends SMS/email through the stack's SNS topic with a link to the event, and enforces retention.
See docs/events.md.
"""

from __future__ import annotations

import argparse

from services.events.service import EventsService
from services.events.settings import EventsSettings
from shared.metrics import service_registry
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.settings import redacted_url
from shared.stream_bus import DETECTIONS_STREAM, StreamBus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--events-dir", help="folder of the events database, clips and snapshots (default: HYBRIDCAM_EVENTS_DIR)")
    parser.add_argument("--link-base", help="dashboard address notification links open (default: HYBRIDCAM_EVENTS_LINK_BASE)")


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start("events", EventsSettings, args, events_dir=args.events_dir,
                                events_link_base=args.link_base) as service:
        settings, site, log = service.settings, service.site, service.log
        bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
        events = EventsService(settings, site, bus)
        service.close_with(bus.close)
        service.close_with(events.close)
        rules = site.events.rules
        log.info("site %s: %d rule(s) over %s from Redis at %s; events in %s", site.site, len(rules), DETECTIONS_STREAM,
                 redacted_url(settings.redis_url), settings.events_dir)
        for rule in rules:
            log.info("  %-16s %-6s %s on %s%s", rule.name, rule.condition.kind, "/".join(rule.labels), rule.zone or rule.line,
                     f", notifies {'+'.join(rule.notify)}" if rule.notify else "")
        log.info("notifications: %s", f"SNS {settings.events_alert_topic_arn}, links to {settings.events_link_base}/events/<id>"
                 if settings.events_alert_topic_arn else "off (no HYBRIDCAM_EVENTS_ALERT_TOPIC_ARN)")
        for line in events.start(service.stop):
            log.info("%s", line)
        service.serve_health(lambda: {"service": "events", "state": events.state()[0], "counters": events.counters()},
                             service_registry(lambda: [events.health()]))
        service.watch_progress(events.progress)
        service.close_with(lambda: log.info("stopped: %(events_opened)d events, %(clips)d clips, %(notified)d notified",
                                            events.counters()))
        events.run(service.stop)
    return 0
