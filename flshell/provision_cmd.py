"""`flshell provision`: project.yml -> root CA, certificates and signed startup kits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flshell import exit_codes

EPILOG = """\
examples:
  flshell provision examples/project.yml -o prod/     root CA + one startup kit per participant
  flshell provision project.yml -o prod/ --force      replace the CA and kits in prod/
  flshell provision --verify prod/site-1               check a kit against its signature.json

Each kit prod/<name>/ goes to its host: the server runs prod/<server>/startup/start.sh, each
site prod/<site>/startup/start.sh, each admin prod/<e-mail>/startup/flshell.sh. prod/ca/rootCA.key
signs every kit and is in none of them: keep it offline.

exit status: 0 done, 1 a kit failed verification or could not be written, 2 invalid project.yml
or arguments
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("provision", help="make the root CA and startup kits from a project.yml",
                       description="Make a project's root CA, a certificate for the server, each "
                                   "site and each admin, and one signed startup kit per "
                                   "participant.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("project", nargs="?", type=Path, help="the project.yml")
    p.add_argument("-o", "--out", type=Path, default=Path("prod"),
                   help="output folder (default ./prod); must be empty unless --force")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty folder, replacing its ca/ and these kits")
    p.add_argument("--verify", nargs="+", type=Path, metavar="KIT",
                   help="verify startup kits (their signature.json) instead of provisioning")
    p.set_defaults(provision_parser=p)
    return p


def run(args: argparse.Namespace) -> int:
    from provisioning import (KitError, ProjectError, ProvisionError, load_kit, load_project,
                              provision)

    if args.verify:
        if args.project is not None:
            print("error: give either a project.yml or --verify KIT, not both", file=sys.stderr)
            return exit_codes.USAGE
        rc = exit_codes.OK
        for kit_dir in args.verify:
            try:
                kit = load_kit(kit_dir)
            except KitError as e:
                print(f"FAILED {kit_dir}: {e}", file=sys.stderr)
                rc = exit_codes.JOB_FAILED
            else:
                print(f"ok {kit_dir}: {kit.type} {kit.name} ({kit.org or '-'}, {kit.role}), "
                      f"certificate valid until {_expiry(kit.cert_path)}")
        return rc
    if args.project is None:
        args.provision_parser.print_usage(sys.stderr)
        print("error: the project.yml is required (or --verify KIT)", file=sys.stderr)
        return exit_codes.USAGE
    try:
        project = load_project(args.project)
    except ProjectError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    try:
        kits = provision(project, args.out, force=args.force)
    except ProvisionError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    except OSError as e:
        print(f"error: could not write {args.out}: {e}", file=sys.stderr)
        return exit_codes.JOB_FAILED
    print(f"project {project.name}: {len(kits)} startup kits in {args.out} "
          f"({project.key_type} keys, valid {project.validity_days} days)")
    width = max(len(n) for n in kits)
    for p in project.participants:
        who = {"server": f"fl {p.fl_port}, admin {p.admin_port}", "client": p.org,
               "admin": f"{p.org}, {p.role}"}[p.type]
        print(f"  {p.type:<6}  {p.name:<{width}}  {who:<24}  {kits[p.name]}")
    print(f"root CA: {args.out / 'ca'} (rootCA.key signs the kits and is in none of them: "
          f"keep it offline)")
    return exit_codes.OK


def _expiry(cert_path: Path) -> str:
    from provisioning.certs import load_cert

    return f"{load_cert(cert_path).not_valid_after_utc:%Y-%m-%d}"
