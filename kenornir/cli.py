"""Command line interface: `kenornir` and `python -m kenornir`."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kenornir import __version__

# Heavy modules (yaml, jinja2, nornir, paramiko) are imported inside the subcommands, so that
# `kenornir --help` and `--version` stay instant.
if TYPE_CHECKING:
    from typing import TypeAlias

    from kenornir.config import BatchConfig, NodeConfig

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK = 0
EXIT_USAGE = 2  # usage errors and invalid configs

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kenornir",
        description="Join many KubeEdge edge nodes at once from one keadm batch config.",
    )
    parser.add_argument("--version", action="version", version=f"kenornir {__version__}")
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add_subcommand in (add_gen_config, add_validate, add_plan):
        add_subcommand(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own exit after --help, --version or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_usage(sys.stderr)
        print("kenornir: error: choose a command (kenornir --help lists them)", file=sys.stderr)
        return EXIT_USAGE
    return command(args)


# --- shared pieces ------------------------------------------------------------------------


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", metavar="CONFIG", help="the batch config file")
    parser.add_argument(
        "-c", "--config", dest="config_option", metavar="CONFIG", help="the same, keadm's spelling"
    )


def load_or_report(args: argparse.Namespace) -> BatchConfig | None:
    """The config named on the command line, or None after printing every problem to stderr."""
    given = [path for path in (args.config, args.config_option) if path is not None]
    if len(given) != 1:
        print("kenornir: error: give the config file once: CONFIG or -c CONFIG", file=sys.stderr)
        return None
    from kenornir.config import ConfigError, load_config

    try:
        return load_config(given[0])
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None


def print_masked(config: BatchConfig, lines: Iterable[str]) -> None:
    """Print to stdout with every secret of the config masked, whatever a line holds."""
    from kenornir.template import mask_secrets

    for line in lines:
        print(mask_secrets(line, config.secrets))


def summary_lines(config: BatchConfig) -> list[str]:
    """What a run would prepare and how it would log in: the body of `validate`."""
    nodes = config.nodes
    lines = [f"  nodes:    {len(nodes)}", *package_lines(config)]
    auth_kinds = Counter(node.ssh.auth.kind for node in nodes)
    auth = ", ".join(
        f"{'ssh-agent' if kind == 'agent' else kind} {count}"
        for kind, count in sorted(auth_kinds.items())
    )
    sudo = sum(node.ssh.sudo for node in nodes)
    lines.append(f"  auth:     {auth}" + (f"; sudo on {_count(sudo, 'node')}" if sudo else ""))
    hooks = [
        f"{field} on {_count(count, 'node')}"
        for field, count in (
            ("preRun", sum(bool(node.pre_run) for node in nodes)),
            ("postRun", sum(bool(node.post_run) for node in nodes)),
        )
        if count
    ]
    if hooks:
        lines.append(f"  hooks:    {', '.join(hooks)}")
    lines.append(f"  workers:  {config.max_run_num} nodes at a time (maxRunNum)")
    return lines


def package_lines(config: BatchConfig) -> list[str]:
    keadm = config.keadm
    if not config.needs_packages:
        return ["  keadm:    already on every node (keadmBinDir): nothing to prepare"]
    lines = [f"  keadm:    {keadm.keadm_version}, prepared for {', '.join(keadm.arch_group)}"]
    if keadm.download.enable:
        check = "sha512 checked" if keadm.download.verify_checksum else "checksum NOT checked"
        lines.append(f"  from:     {keadm.package_url('<arch>')} ({check})")
    else:
        lines.append(f"  from:     {keadm.offline_package_path('<arch>')} (offline)")
    own = sum(node.keadm_bin_dir is not None for node in config.nodes)
    if own:
        lines.append(f"  own keadm: {_count(own, 'node')} (keadmBinDir), nothing uploaded there")
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# --- gen-config ---------------------------------------------------------------------------


def add_gen_config(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "gen-config",
        help="print a commented sample config",
        description="Print a commented sample batch config: upstream's fields, kenornir's "
        "extensions commented out. Every <PLACEHOLDER> must be replaced.",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (never overwritten) instead of stdout"
    )
    parser.set_defaults(command=gen_config)


def gen_config(args: argparse.Namespace) -> int:
    from kenornir.config import SAMPLE_CONFIG

    if args.output is None:
        sys.stdout.write(SAMPLE_CONFIG)
        return EXIT_OK
    try:
        with Path(args.output).open("x", encoding="utf-8") as output:
            output.write(SAMPLE_CONFIG)
    except FileExistsError:
        print(f"kenornir: error: {args.output} exists (remove it, or pick a name)", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"kenornir: error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.output}: replace every <PLACEHOLDER>, then kenornir validate {args.output}")
    return EXIT_OK


# --- validate -----------------------------------------------------------------------------


def add_validate(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "validate",
        help="check a config and summarize it",
        description="Load and check a batch config without contacting any node. Prints a "
        "summary and exits 0, or prints every problem to stderr and exits 2.",
    )
    add_config_argument(parser)
    parser.set_defaults(command=validate)


def validate(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return EXIT_USAGE
    print_masked(config, [f"{config.source}: valid", *summary_lines(config)])
    return EXIT_OK


# --- plan ---------------------------------------------------------------------------------


def add_plan(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "plan",
        help="show what a run would upload and run on each node",
        description="Dry run: per node, the files that would be uploaded and the exact keadm "
        "command line, secrets masked. Nothing is contacted.",
    )
    add_config_argument(parser)
    parser.set_defaults(command=plan)


def plan(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return EXIT_USAGE
    lines = [f"{config.source}: plan (no node is contacted)", *summary_lines(config)]
    for node in config.nodes:
        lines += ["", *node_plan(node)]
    print_masked(config, lines)
    return EXIT_OK


def node_plan(node: NodeConfig) -> list[str]:
    from kenornir.config import STAGING_DIR
    from kenornir.template import hook_command_line

    def hook_line(script: str) -> str:
        return hook_command_line(Path(script).name, STAGING_DIR)

    ssh = node.ssh
    auth = "ssh-agent" if ssh.auth.kind == "agent" else f"{ssh.auth.kind} auth"
    lines = [f"{node.name}  {ssh.address}  user {ssh.username}, {auth}"]
    uploads = upload_lines(node)
    lines.append(f"  uploads to {STAGING_DIR}:" if uploads else "  uploads: nothing")
    lines += [f"    {line}" for line in uploads]
    lines.append("  runs (through sudo):" if ssh.sudo else "  runs:")
    lines += [f"    pre-run   {hook_line(script)}" for script in node.pre_run]
    lines.append(f"    keadm     {node.remote_command_masked}")
    lines += [f"    post-run  {hook_line(script)}" for script in node.post_run]
    if node.keadm_bin_dir is None:
        lines.append("  (the uploaded keadm's sha256 is checked on the node right before it runs)")
    return lines


def upload_lines(node: NodeConfig) -> list[str]:
    lines = []
    if node.keadm_bin_dir is None:
        lines.append("keadm (<arch> from package, detected at run time)")
    if node.copy_from is not None:
        lines += [
            f"{path.name}  {_size(path)}  (copyFrom {node.copy_from})"
            for path in sorted(Path(node.copy_from).iterdir())
        ]
    for field, scripts in (("preRun", node.pre_run), ("postRun", node.post_run)):
        lines += [
            f"{Path(script).name}  {_size(Path(script))}  ({field} {script})" for script in scripts
        ]
    return lines


def _size(path: Path) -> str:
    try:
        return _count(path.stat().st_size, "byte")
    except OSError as exc:
        return f"(cannot read: {exc.strerror})"
