"""`python -m tests.lab up|down|status|exec|packages`: the lab from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.lab.lab import DEFAULT_TMP_SIZE_MB, Lab, LabError
from tests.lab.node import LabNode
from tests.lab.packages import DEFAULT_VERSION, build_packages, ensure_packages
from tests.lab.relay import RELAY_PORT, EdgeLink
from tests.lab.subnets import DEFAULT_SUBNET

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PACKAGE_SIZE_MB = 80


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="lab: %(message)s")
    try:
        result: int = args.run(args)
    except (LabError, RuntimeError, ValueError, OSError) as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    return result


def _up(args: argparse.Namespace) -> int:
    sites = dict(args.site)
    if len(sites) != len(args.site):
        raise ValueError("name each site once (--site NAME:COUNT)")
    lab = Lab(args.state_dir, args.subnet)
    started = time.monotonic()
    packages_dir = args.state_dir / "packages"
    # The packages are built (once) while the nodes start.
    with ThreadPoolExecutor(max_workers=1) as pool:
        packages = pool.submit(
            ensure_packages, packages_dir, binary_size=args.package_size_mb * 2**20
        )
        edge_link = EdgeLink(args.link_rate_mbit, args.link_rtt_ms) if args.edge_link else None
        lab.up(
            args.nodes,
            arch_mix=args.arch_mix,
            tmp_size_mb=args.tmp_size_mb,
            edge_link=edge_link,
            busybox_nodes=args.busybox,
            sites=sites,
        )
        packages.result()
    nodes = lab.client_nodes
    inventory = lab.write_inventory(args.inventory, packages_dir)
    elapsed = time.monotonic() - started
    _print_nodes(nodes)
    print(f"{len(nodes)} nodes up in {elapsed:.1f} s on {lab.subnet}.x (state {lab.state_dir})")
    for site in lab.sites.values():
        print(
            f"site {site.name}: {', '.join(site.node_names)} only through bastion"
            f" root@{site.bastion_address}:{site.bastion_port}"
            f" (network namespace {site.netns}, this machine's end {site.host_address})"
        )
    if edge_link is not None:
        print(
            f"each node behind its own edge link: {edge_link.rate_mbit:g} Mbit/s,"
            f" {edge_link.rtt_ms:g} ms round trip, on port {RELAY_PORT} (sshd itself on 22)"
        )
    print(f"key {lab.key_path}, password in {lab.accounts.password_path}, users root and edge")
    print(f"batch config {inventory}")
    return 0


def _down(args: argparse.Namespace) -> int:
    lab = Lab(args.state_dir)
    count, sites = len(lab.nodes), len(lab.sites)
    lab.down()
    removed = f" and {sites} site(s) removed" if sites else ""
    print(f"{count} nodes stopped{removed} (state {lab.state_dir})")
    return 0


def _status(args: argparse.Namespace) -> int:
    lab = Lab(args.state_dir)
    if not lab.nodes:
        print(f"no lab running in {lab.state_dir}")
        return 1
    statuses = lab.status()
    _print_nodes(
        [status.node for status in statuses],
        [status.banner or "not answering" for status in statuses],
    )
    answering = sum(status.answering for status in statuses)
    # Bastions answer from this machine, through their veth; site nodes from inside the site.
    bastions = {site.name: lab.bastion_banner(site.name) for site in lab.sites.values()}
    for name, banner in bastions.items():
        site = lab.site(name)
        address = f"{site.bastion_address}:{site.bastion_port}"
        print(f"{site.bastion_name:16} {address:18} {banner or 'not answering'}")
    print(f"{answering}/{len(statuses)} nodes answering (state {lab.state_dir})")
    if bastions:
        up = sum(banner is not None for banner in bastions.values())
        print(f"{up}/{len(bastions)} bastions answering")
    everything = answering == len(statuses) and all(bastions.values())
    return 0 if everything else 1


def _exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ValueError("exec needs a command: exec NODE -- CMD ...")
    # Like ssh: the words form one shell command line, run inside the node.
    completed = Lab(args.state_dir).exec(args.node, " ".join(command))
    sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr)
    return completed.returncode


def _packages(args: argparse.Namespace) -> int:
    packages = build_packages(
        args.out, args.version, binary_size=args.size_mb * 2**20, layout=args.layout
    )
    for arch, tarball in packages.items():
        print(f"{arch:6} {tarball}")
    return 0


def _print_nodes(nodes: Sequence[LabNode], states: Sequence[str] | None = None) -> None:
    # A SITE column only when the lab has sites, so a plain lab's table stays as it was.
    sites = any(node.site is not None for node in nodes)
    header = f"{'NODE':10} {'ADDRESS':16} {'ARCH':8} {'TOOLS':9}" + (f" {'SITE':8}" * sites)
    print(header + (" STATE" if states is not None else ""))
    for index, node in enumerate(nodes):
        line = f"{node.name:10} {f'{node.address}:{node.port}':16} {node.arch:8} {node.flavour:9}"
        line += f" {node.site or '-':8}" * sites
        print(line + (f" {states[index]}" if states is not None else ""))


def _site_argument(text: str) -> tuple[str, int]:
    name, colon, count = text.partition(":")
    if not colon or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:COUNT (north:3), not {text!r}")
    return name, int(count)


def _parser() -> argparse.ArgumentParser:
    default_state = Path(os.environ.get("KENORNIR_LAB_DIR") or REPO / ".lab")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=default_state,
        help="lab state dir (default: $KENORNIR_LAB_DIR or <repo>/.lab)",
    )
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", parents=[common], help="start the lab nodes")
    up.add_argument("--nodes", type=int, default=5, help="how many nodes (default 5, max 1000)")
    up.add_argument("--arch-mix", action="store_true", help="cycle x86_64, aarch64, armv7l")
    up.add_argument(
        "--busybox", type=int, default=0, metavar="K", help="the last K nodes run BusyBox tools"
    )
    up.add_argument(
        "--site",
        type=_site_argument,
        action="append",
        default=[],
        metavar="NAME:COUNT",
        help="COUNT of the last nodes live in site NAME, behind its bastion (repeatable)",
    )
    up.add_argument("--subnet", default=DEFAULT_SUBNET, help="127.X.Y (default %(default)s)")
    up.add_argument("--tmp-size-mb", type=int, default=DEFAULT_TMP_SIZE_MB, help="node /tmp")
    up.add_argument(
        "--package-size-mb", type=int, default=DEFAULT_PACKAGE_SIZE_MB, help="keadm binary size"
    )
    up.add_argument(
        "--edge-link",
        action="store_true",
        help=f"put each node behind a rate-limiting, delaying relay on port {RELAY_PORT}",
    )
    up.add_argument("--link-rate-mbit", type=float, default=20.0, help="(default %(default)s)")
    up.add_argument("--link-rtt-ms", type=float, default=40.0, help="(default %(default)s)")
    up.add_argument(
        "--inventory",
        type=Path,
        default=REPO / "inventory" / "lab.yaml",
        help="where to write the batch config (default %(default)s)",
    )
    up.set_defaults(run=_up)

    down = commands.add_parser("down", parents=[common], help="stop every lab process")
    down.set_defaults(run=_down)
    status = commands.add_parser("status", parents=[common], help="which nodes answer")
    status.set_defaults(run=_status)

    exec_ = commands.add_parser("exec", parents=[common], help="run a command inside a node")
    exec_.add_argument("node")
    exec_.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...")
    exec_.set_defaults(run=_exec)

    packages = commands.add_parser("packages", help="build fake keadm release packages")
    packages.add_argument("out", type=Path)
    packages.add_argument("--size-mb", type=int, default=DEFAULT_PACKAGE_SIZE_MB)
    packages.add_argument("--layout", choices=("arch", "flat"), default="arch")
    packages.add_argument("--version", default=DEFAULT_VERSION)
    packages.set_defaults(run=_packages)
    return parser


if __name__ == "__main__":
    sys.exit(main())
