"""Manage the face watch-list (a Rekognition collection) with the operator's AWS credentials.

  hybridcam faces enroll --name NAME IMAGE [IMAGE ...]   index the person's face from each image
  hybridcam faces list                                   people on the watch-list and their face counts
  hybridcam faces remove NAME                            delete the person's faces and past match items

Every enrolment image must show exactly one face. The collection and frames table come from the stack's
outputs (FaceCollectionId, FaceMatchesTableName) or --collection / --table / HYBRIDCAM_CLOUD_FACE_COLLECTION.
Against the local stack, set AWS_ENDPOINT_URL_REKOGNITION to the local model server. What is stored
where, and for how long: docs/faces.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from shared.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    enroll = sub.add_parser("enroll", help="add a person from one or more photos (one face each)")
    enroll.add_argument("--name", required=True, help="the person's name, as alerts will show it")
    enroll.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG or PNG showing only this person's face")
    sub.add_parser("list", help="list the people on the watch-list")
    remove = sub.add_parser("remove", help="delete a person's faces, past match items and alert cooldown")
    remove.add_argument("name")
    remove.add_argument("--settle-s", type=float, default=65.0,
                        help="wait this long, then sweep the matches again: a search already running when the faces "
                             "were deleted can still write one (the detector's time-out is 60 s; default 65)")
    remove.add_argument("--events-dir", type=Path, help="also forget the name in this edge's stored events "
                                                         "(HYBRIDCAM_EVENTS_DIR of the events service, on the edge host)")
    for action in sub.choices.values():
        action.add_argument("--collection", help="Rekognition collection (default: the stack's FaceCollectionId)")
        action.add_argument("--table", help="face matches table (default: the stack's FaceMatchesTableName)")
        action.add_argument("--stack-name", help="CloudFormation stack (default HYBRIDCAM_CLOUD_STACK_NAME or hybridcam)")
        action.add_argument("--region", help="AWS region (default HYBRIDCAM_CLOUD_REGION or the SDK's)")


def _targets(args: argparse.Namespace) -> tuple[str, str | None]:
    from cloud.settings import load_cloud_settings

    settings = load_cloud_settings()
    collection, table = args.collection or settings.face_collection, args.table
    if collection and (table or args.action != "remove"):
        return collection, table
    from cloud.deploy import stack_outputs

    outputs = stack_outputs(args.stack_name or settings.stack_name, args.region or settings.region)
    collection = collection or outputs.get("FaceCollectionId")
    if not collection:
        raise ConfigError("the stack has no FaceCollectionId output; pass --collection or redeploy the stack.")
    return collection, table or outputs.get("FaceMatchesTableName")


def forget_in_events(events_dir: Path, name: str) -> int:
    """The person's name removed from the face matches of the edge's stored events (docs/events.md)."""
    from shared.event_store import EventStore

    store = EventStore(events_dir)
    try:
        return store.forget_person(name)
    finally:
        store.close()


def run(args: argparse.Namespace) -> int:
    import boto3

    from cloud.deploy import DeployError
    from cloud.watch_list import WatchList, WatchListError

    try:
        collection, table = _targets(args)
        region = args.region
        watch_list = WatchList(boto3.client("rekognition", region_name=region), collection,
                               boto3.client("dynamodb", region_name=region) if table else None, table)
        if args.action == "enroll":
            enrolled = watch_list.enroll(args.name, args.images)
            print(f"{args.name} is on the watch-list of {collection} with {len(enrolled)} new face(s)")
        elif args.action == "list":
            people = watch_list.people()
            if not people:
                print(f"nobody is on the watch-list of {collection}")
            for person, face_ids in people.items():
                print(f"{person}: {len(face_ids)} face(s)")
        elif args.action == "remove":
            removal = watch_list.remove(args.name, settle_s=args.settle_s)
            if not removal.faces:
                print(f"{args.name} had no faces in {collection}")
            print(f"removed {args.name}: {removal.faces} face(s) from {collection}, {removal.match_items} past match item(s)"
                  + (f" from {table}" if table else " (no face matches table given: match items left)"))
            if args.events_dir is not None:
                print(f"forgot {args.name} in {forget_in_events(args.events_dir, args.name)} stored event(s) in {args.events_dir}")
    except (WatchListError, DeployError) as error:
        print(f"hybridcam faces {args.action}: {error}")
        return 1
    except NoCredentialsError:
        raise ConfigError("no AWS credentials found: configure a profile, or set AWS_ENDPOINT_URL and keys for moto.") from None
    except (BotoCoreError, ClientError) as error:
        raise ConfigError(f"AWS refused or could not be reached: {error}") from None
    return 0
