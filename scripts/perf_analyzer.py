"""Run perf_analyzer against room_restyle on a running server: `python scripts/perf_analyzer.py [--url HOST:PORT]`.

Starts a tiny-profile tritonserver first if none is given. Figures from this 2-core CPU with
tiny random weights measure orchestration overhead only, not model speed or quality.
"""
import argparse
import sys
from pathlib import Path

import cv2

from client_api.local_stack import free_port
from restyle import perf, server
from restyle.samples import synthetic_room


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="HOST:PORT of a running server (default: start one, tiny profile)")
    parser.add_argument("--protocol", default="http", choices=["http", "grpc"])
    parser.add_argument("--photo", type=Path, help="room photo (default: a synthetic room)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    image = args.photo.read_bytes() if args.photo else cv2.imencode(".jpg", synthetic_room()[:, :, ::-1])[1].tobytes()
    srv = None
    if args.url is None:
        srv = server.start("tiny", free_port(), free_port(), free_port())
        args.url = srv.http_url if args.protocol == "http" else srv.grpc_url
    try:
        done = perf.run(args.url, image, Path("out/perf"), protocol=args.protocol, steps=args.steps,
                        concurrency=args.concurrency)
        print(done.stdout, done.stderr, sep="\n")
        return done.returncode
    finally:
        if srv:
            srv.stop()


if __name__ == "__main__":
    sys.exit(main())
