"""`python -m runner image`: build the qc2c image with BuildKit, tagged qc2c:<commit> and qc2c:latest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK
from runner.image import ContainerError, build_image

EPILOG = """examples:
  python -m runner image                                   # what `make image` runs
  python -m runner image --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
  python -m runner image --base-image debian-python:local --build-arg PIP_NO_INDEX=1 \\
      --build-arg PIP_FIND_LINKS=http://127.0.0.1:8000/ --network host   # offline, from a local wheelhouse
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "image",
        help="build the pinned CUDA image, tagged with the git commit",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repo", type=Path, default=Path("."), help="checkout holding the Dockerfile")
    parser.add_argument("--base-image", help="override the digest-pinned BASE_IMAGE (e.g. a local test base)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE", help="passed to docker build")
    parser.add_argument("--tag", action="append", default=[], help="tags instead of qc2c:<commit> + qc2c:latest")
    parser.add_argument("--network", help="build network (host: reach a wheelhouse served on 127.0.0.1)")
    parser.add_argument("--docker", help="docker CLI to use (default: $QC2C_DOCKER_CLI or docker on PATH)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    build_args: dict[str, str] = {}
    for item in args.build_arg:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"runner image: --build-arg {item!r}: expected NAME=VALUE", file=sys.stderr)
            return EXIT_BAD_INPUT
        build_args[name] = value
    if args.base_image:
        build_args["BASE_IMAGE"] = args.base_image
    repo = args.repo.resolve()
    if not (repo / "Dockerfile").is_file():
        print(f"runner image: {repo / 'Dockerfile'}: not found (run from the checkout or pass --repo)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        identity = build_image(
            repo, build_args=build_args, tags=args.tag or None, docker_cli=args.docker, network=args.network
        )
    except ContainerError as exc:
        print(f"runner image: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(identity, indent=2))
    return EXIT_OK
