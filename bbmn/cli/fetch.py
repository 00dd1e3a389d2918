"""``bbmn fetch``: copy a registered data file from a local mirror, or download it; verify sha256."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="put a raw data file in place (mirror copy or download), checked",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="where the file goes")
    p.add_argument("--sha256", required=True, help="the file's registered sha256")
    p.add_argument("--path", help="the file's path inside a mirror directory")
    p.add_argument("--local", metavar="FILE",
                   help="a local file (a registry entry's path): copied, no mirror or download")
    p.add_argument("--mirror", action="append", default=[],
                   help="mirror directory (repeatable; $BBMN_DATA_MIRROR is tried first)")
    p.add_argument("--url", help="public address of the file (or of the archive holding it)")
    p.add_argument("--member", help="the file's name inside the zip archive at --url")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading when no mirror has the file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.data.fetch import copy_local, fetch, mirror_dirs

    if args.local:
        print(f"{args.out}: {copy_local(args.out, args.local, args.sha256)}")
        return 0
    origin = fetch(args.out, args.sha256, args.path, mirror_dirs(args.mirror), args.url,
                   args.member, args.download)
    print(f"{args.out}: {origin}")
    return 0
