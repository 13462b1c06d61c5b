#!/usr/bin/env python3
"""Try a recognition session end to end against a running service, with nothing else to set up.

Builds a demo "classroom camera" video from the group photos in ../shared/faces (written into
--video-dir, which must be the service's CAMERA_FILE_ROOT), enrols the people in it as students
demo-<name>, runs a local callback receiver that prints what the service posts, starts a session on the
video, prints who was recognised, stops the session and erases the demo students again (--keep keeps
them). Run it against a demo service with its own data folder, never a school's: start that first, e.g.

    DATA_DIR=/tmp/recognizer-demo/data CAMERA_FILE_ROOT=/tmp/recognizer-demo CALLBACK_ALLOWED_HOSTS=127.0.0.1 \\
        MODEL_DIR=../shared/models/buffalo_s_int8 .venv/bin/python python/start_production.py --port 8001
    .venv/bin/python scripts/try_session.py --url http://127.0.0.1:8001 --video-dir /tmp/recognizer-demo
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests
from devtools.receiver import Receiver
from devtools.streams import BBT, build_video


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default %(default)s)")
    parser.add_argument("--api-key", help="sent as X-API-Key when the service has keys")
    parser.add_argument("--video-dir", type=Path, required=True,
                        help="where to write the demo video: the service's CAMERA_FILE_ROOT")
    parser.add_argument("--slot", type=int, default=9001, help="slot id of the demo session (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=40, help="how long to watch (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the demo students (default: erased at the end)")
    args = parser.parse_args(argv)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    api = args.url.rstrip("/") + "/api/v1"

    args.video_dir.mkdir(parents=True, exist_ok=True)
    video = build_video(args.video_dir / "demo_classroom.mp4")
    print(f"demo video: {video}")
    people = sorted(p for p in (BBT / "portraits").iterdir() if p.is_dir())
    enrolled = []
    try:
        for person in people:
            files = [("image", (p.name, p.read_bytes())) for p in sorted(person.iterdir())[:3]]
            r = requests.post(f"{api}/students/{DEMO}{person.name}/faces", files=files, headers=headers,
                              data={"name": person.name.replace("_", " ")}, timeout=120)
            if r.status_code not in (200, 201):
                print(f"error: enrolling {person.name}: {r.status_code} {r.text}", file=sys.stderr)
                return 1
            enrolled.append(f"{DEMO}{person.name}")
        print(f"enrolled {len(people)} demo students: {', '.join(enrolled)}")
        return _watch(args, api, headers, video, len(people))
    finally:
        requests.post(f"{api}/sessions/{args.slot}/stop", headers=headers, timeout=10)  # also after an error
        if not args.keep:
            for sid in enrolled:
                requests.delete(f"{api}/students/{sid}", headers=headers, timeout=60)
            if enrolled:
                print(f"erased the {len(enrolled)} demo students (--keep keeps them)")


DEMO = "demo-"  # the demo's students: an id a school's roster does not use, erased at the end


def _watch(args, api: str, headers: dict, video, people: int) -> int:
    receiver = Receiver(port=0)
    requests.post(f"{api}/sessions/{args.slot}/stop", headers=headers, timeout=10)  # a previous demo run
    body = {"slot_id": args.slot, "cameras": [{"camera_id": 1, "url": video.name}],  # relative: under the root
            "callback_url": receiver.url, "frame_interval_ms": 300}
    r = requests.post(f"{api}/sessions", json=body, headers=headers, timeout=10)
    if r.status_code == 409:
        print(f"error: slot {args.slot} already has a live session; pass another --slot", file=sys.stderr)
        return 1
    if r.status_code != 201:
        print(f"error: starting the session: {r.status_code} {r.text}\n(is --video-dir the service's "
              "CAMERA_FILE_ROOT, and 127.0.0.1 in its CALLBACK_ALLOWED_HOSTS?)", file=sys.stderr)
        return 1
    print(f"session started for slot {args.slot}; callbacks arrive at {receiver.url}")
    shown = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        time.sleep(1)
        bodies = receiver.accepted()
        for delivery in bodies[shown:]:
            print("callback:", json.dumps(delivery)[:300])
        shown = len(bodies)
    r = requests.post(f"{api}/sessions/{args.slot}/stop", headers=headers, timeout=10)
    session = r.json()
    time.sleep(2)
    for delivery in receiver.accepted()[shown:]:
        print("callback:", json.dumps(delivery)[:300])
    names = [s["name"] for s in session["recognized_students"]]
    print(f"\nstopped. recognised {len(names)} of {people}: {', '.join(names) or 'nobody'}")
    receiver.close()
    return 0 if names else 1


if __name__ == "__main__":
    sys.exit(main())
