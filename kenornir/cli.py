"""Command line interface: `kenornir` and `python -m kenornir`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kenornir import __version__
from kenornir.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_PREPARE_FAILED, EXIT_USAGE
from kenornir.retry import DEFAULT_RETRIES, DEFAULT_RETRY_DELAY_S

# Heavy modules (yaml, jinja2, nornir, paramiko) are imported inside the subcommands, so that
# `kenornir --help` and `--version` stay instant.

if TYPE_CHECKING:
    from typing import TypeAlias

    from kenornir.config import BatchConfig, NodeConfig

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kenornir",
        description="Join many KubeEdge edge nodes at once from one keadm batch config.",
    )
    parser.add_argument("--version", action="version", version=f"kenornir {__version__}")
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add_subcommand in (
        add_run,
        add_gen_config,
        add_validate,
        add_plan,
        add_prepare,
        add_worker,
    ):
        add_subcommand(subcommands)
    return parser


def with_default_command(argv: Sequence[str]) -> list[str]:
    """`kenornir CONFIG` and keadm's `kenornir -c CONFIG` mean `kenornir run ...`."""
    words = list(argv)
    commands = {"run", "gen-config", "validate", "plan", "prepare", "worker"}
    if words and words[0] not in commands and words[0] not in ("-h", "--help", "--version"):
        return ["run", *words]
    return words


class _WarningsToStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """kenornir's own warnings (e.g. an unverified package) as one `kenornir: warning:` line,
    with the loaded config's secrets masked."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setLevel(logging.WARNING)
        self.setFormatter(logging.Formatter("kenornir: warning: %(message)s"))
        self.secrets: tuple[str, ...] = ()

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.secrets:
            return text
        from kenornir.template import mask_secrets

        return mask_secrets(text, self.secrets)


def show_warnings() -> None:
    logger = logging.getLogger("kenornir")
    if not any(isinstance(h, _WarningsToStderr) for h in logger.handlers):
        logger.addHandler(_WarningsToStderr())


def mask_warnings(secrets: Sequence[str]) -> None:
    """From now on, mask these secrets in the warnings shown on stderr."""
    for handler in logging.getLogger("kenornir").handlers:
        if isinstance(handler, _WarningsToStderr):
            handler.secrets = tuple(secrets)


def main(argv: Sequence[str] | None = None) -> int:
    show_warnings()
    parser = build_parser()
    try:
        args = parser.parse_args(with_default_command(sys.argv[1:] if argv is None else argv))
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
    parser.add_argument(
        "--ssh-config",
        type=Path,
        metavar="FILE",
        help="an OpenSSH client config whose Host blocks give the nodes' HostName, User, Port, "
        "IdentityFile and ProxyJump where the batch config does not (never read unless given)",
    )


def load_or_report(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> BatchConfig | None:
    """The config named on the command line, or None after printing every problem to stderr.

    env: where `${NAME}` is read from; default the process environment.
    """
    given = [path for path in (args.config, args.config_option) if path is not None]
    if len(given) != 1:
        print("kenornir: error: give the config file once: CONFIG or -c CONFIG", file=sys.stderr)
        return None
    from kenornir.config import ConfigError, exposed_secrets_warning, load_config

    try:
        config = load_config(given[0], env, ssh_config=args.ssh_config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    mask_warnings(config.secrets)
    warning = exposed_secrets_warning(given[0], config)
    if warning is not None:
        print(f"kenornir: warning: {warning}", file=sys.stderr)
    return config


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
    # A checksum file that is there is always checked; verifyChecksum says if it must be.
    required = keadm.download.verify_checksum
    if keadm.download.enable:
        check = "sha512 checked" if required else "sha512 checked if a checksum is published"
        lines.append(f"  from:     {keadm.package_url('<arch>')} ({check})")
    else:
        check = "sha512 file required" if required else "sha512 checked if its file is there"
        lines.append(f"  from:     {keadm.offline_package_path('<arch>')} (offline; {check})")
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
        # 0600 from the start: the file is about to hold passwords and tokens.
        descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as output:
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
    from kenornir import shell
    from kenornir.config import STAGING_DIR

    def hook_line(script: str) -> str:
        return shell.hook_line(Path(script).name, STAGING_DIR)

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
    return lines + verification_lines(node)


def verification_lines(node: NodeConfig) -> list[str]:
    """What the node checks before anything runs, by whom and when (see shell.guarded)."""
    from kenornir.config import STAGING_DIR
    from kenornir.shell import staging_chain

    ssh = node.ssh
    if ssh.sudo:
        who, owner = "root (through sudo)", "root"
    elif ssh.username == "root":
        who = owner = "root"
    else:
        who, owner = f"the login user {ssh.username}", ssh.username
    uploaded = ["keadm"] if node.keadm_bin_dir is None else []
    uploaded += ["every copyFrom file"] if node.copy_from is not None else []
    uploaded += ["each hook script"] if node.pre_run or node.post_run else []
    if not uploaded:
        return []
    return [
        f"  checked on the node by {who}, in the shell that runs them, right before they run:",
        f"    {' and '.join(staging_chain(STAGING_DIR))}: directories owned by {owner}, "
        "writable by no one else",
        f"    {', '.join(uploaded)}: the sha256 kenornir uploaded",
    ]


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


# --- run ----------------------------------------------------------------------------------


def add_run(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "run",
        help="run the batch (the default: `kenornir CONFIG`)",
        description="Prepare keadm packages, then bring every selected node through upload, "
        "hooks and its keadm command, maxRunNum nodes at a time. Exit 0: all selected nodes ok; "
        "1: some failed; 2: bad config or usage; 3: package preparation failed; 130: interrupted.",
    )
    add_config_argument(parser)
    chosen = parser.add_argument_group("selection")
    chosen.add_argument(
        "--limit", action="append", default=[], metavar="NAME|GLOB[,..]", help="only these nodes"
    )
    chosen.add_argument(
        "--exclude", action="append", default=[], metavar="NAME|GLOB[,..]", help="not these nodes"
    )
    chosen.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="nodes with this label"
    )
    chosen.add_argument(
        "--rerun-failed",
        nargs="?",
        const="kenornir-runs/latest",
        metavar="RUN_DIR",
        help="the nodes of that run (default: the latest) that did not end ok",
    )
    tuning = parser.add_argument_group("tuning")
    tuning.add_argument("--workers", type=_positive_int, metavar="N", help="overrides maxRunNum")
    tuning.add_argument(
        "--connect-timeout",
        type=_positive_float,
        metavar="S",
        help="TCP connect, SSH banner and login, each (default 10)",
    )
    tuning.add_argument(
        "--command-timeout",
        type=_positive_float,
        metavar="S",
        help="keadm and each hook script; killed on the node after it (default 1800)",
    )
    tuning.add_argument(
        "--host-key-policy",
        choices=("accept-new", "strict", "ignore"),
        default="accept-new",
        help="unknown hosts: learn (accept-new, the default) or refuse (strict); a changed key "
        "is refused unless ignore",
    )
    tuning.add_argument(
        "--known-hosts", type=Path, metavar="FILE", help="default ~/.ssh/known_hosts"
    )
    tuning.add_argument(
        "--transfer",
        choices=("auto", "stream", "sftp"),
        help="how files reach nodes: one exec stream, packed (fastest), or SFTP file by file "
        "(resumable); auto, the default, streams where the node's `head -c` is exact and uses "
        "SFTP elsewhere (BusyBox); overrides the config's `transfer`",
    )
    tuning.add_argument(
        "--retries",
        type=_whole_number,
        default=DEFAULT_RETRIES,
        metavar="N",
        help="tries again after a transient fault (no answer, a lost connection) before keadm "
        f"starts; keadm and hooks are never retried (default {DEFAULT_RETRIES})",
    )
    tuning.add_argument(
        "--retry-delay",
        type=_positive_float,
        default=DEFAULT_RETRY_DELAY_S,
        metavar="S",
        help="first wait before a retry, doubled each time, with jitter "
        f"(default {DEFAULT_RETRY_DELAY_S:g})",
    )
    tuning.add_argument(
        "--rejoin",
        action="store_true",
        help="a join on a node joined already (/etc/kubeedge/config/edgecore.yaml exists) runs "
        "`keadm reset` first; by default such a node is skipped",
    )
    add_package_arguments(tuning)
    beyond = parser.add_argument_group("beyond one controller (README: Beyond one controller)")
    beyond.add_argument(
        "--broker",
        metavar="URL",
        help="run the nodes on `kenornir worker` processes through this Redis (redis://HOST:PORT/DB"
        ", rediss:// for TLS; ${NAME} in it is read from the environment, to keep a password out "
        "of the process list); each node goes to the queue of its `site`",
    )
    beyond.add_argument(
        "--worker-timeout",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="a node whose worker is silent this long fails (worker lost); a node no worker of "
        "its site takes this long is unreachable (default 60)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--run-dir", type=Path, metavar="DIR", help="default kenornir-runs/<UTC>")
    output.add_argument("-v", "--verbose", action="store_true", help="add Nornir's print_result")
    output.add_argument("--json", action="store_true", help="print report.json, not the table")
    output.add_argument("--no-progress", action="store_true", help="plain lines, no progress bar")
    parser.set_defaults(command=run)


def add_package_arguments(group: argparse._ArgumentGroup) -> None:
    add_cache_dir_argument(group)
    group.add_argument(
        "--insecure-skip-checksum",
        action="store_true",
        help="use a package that has no checksum file (none published, none beside the offline "
        "tarball) unverified; a checksum that exists is still checked",
    )


def add_cache_dir_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="default ~/.cache/kenornir/keadm; made 0700 when missing; refused (exit 3) when it, "
        "a dir in it or a parent (sticky ones such as /tmp excepted) is writable by group or "
        "others or owned by another user",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _whole_number(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _split(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(part for value in values for part in value.split(",") if part)


def run(args: argparse.Namespace) -> int:
    from kenornir.config.portable import WorkerEnvironment

    # On workers the ${NAME} secrets are theirs to resolve: the controller may lack them.
    on_workers = WorkerEnvironment(os.environ) if args.broker is not None else None
    config = load_or_report(args, on_workers)
    if config is None:
        return EXIT_USAGE
    left = sorted(on_workers.left_to_workers) if on_workers else []
    if left:
        print(
            f"kenornir: {', '.join(left)} not set here: the workers read "
            f"{'it' if len(left) == 1 else 'them'} from their environment",
            file=sys.stderr,
        )
    labels = []
    for label in args.label:
        key, equals, value = label.partition("=")
        if not equals or not key:
            print(f"kenornir: error: --label {label}: write it as KEY=VALUE", file=sys.stderr)
            return EXIT_USAGE
        labels.append((key, value))
    from kenornir.batch import RunOptions, Selection, SelectionError, run_batch
    from kenornir.config import ConfigError
    from kenornir.distributed.url import BrokerError
    from kenornir.report import RunDirError, summary_table
    from kenornir.template import mask_secrets

    broker = None
    if args.broker is not None:
        from kenornir.distributed.url import resolved_url

        try:
            broker = resolved_url(args.broker, os.environ)
        except BrokerError as exc:
            print(f"kenornir: error: {exc}", file=sys.stderr)
            return EXIT_USAGE

    selection = Selection(
        limit=_split(args.limit),
        exclude=_split(args.exclude),
        labels=tuple(labels),
        rerun_failed=Path(args.rerun_failed) if args.rerun_failed else None,
    )
    options = RunOptions(
        workers=args.workers,
        connect_timeout=args.connect_timeout,
        command_timeout=args.command_timeout,
        host_key_policy=args.host_key_policy,
        known_hosts=args.known_hosts,
        cache_dir=args.cache_dir,
        verify_checksum=False if args.insecure_skip_checksum else None,
        run_dir=args.run_dir,
        transfer=args.transfer,
        retries=args.retries,
        retry_delay=args.retry_delay,
        rejoin=args.rejoin,
        broker=broker,
        worker_timeout=args.worker_timeout,
        ssh_config=args.ssh_config,
    )
    # With --json, stdout carries the report alone; the live lines go to stderr.
    live = sys.stderr if args.json else sys.stdout
    try:
        batch_run = run_batch(
            config, selection, options, live, progress=live.isatty() and not args.no_progress
        )
    except (SelectionError, RunDirError, BrokerError) as exc:
        print(f"kenornir: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:  # the file went away before a --broker run read it again
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    if batch_run.prepare_error is not None:
        failure = mask_secrets(batch_run.prepare_error, config.secrets)
        print(
            f"kenornir: preparing keadm packages failed: {failure}\n"
            f"no node was touched; report: {batch_run.run_dir / 'report.json'}",
            file=sys.stderr,
        )
        return batch_run.exit_code
    if not batch_run.report:
        print(f"nothing to rerun: every node of {args.rerun_failed} ended ok")
        return EXIT_OK
    if args.verbose and batch_run.results is not None:
        print(mask_secrets(verbose_result(batch_run.results), config.secrets))
    if args.json:
        print((batch_run.run_dir / "report.json").read_text("utf-8"), end="")
    else:
        print(mask_secrets(summary_table(batch_run.outcomes, batch_run.run_dir), config.secrets))
    return batch_run.exit_code


def verbose_result(results: object) -> str:
    """nornir-utils' print_result of the whole run, captured so it can be masked."""
    import contextlib
    import io

    from nornir_utils.plugins.functions import print_result

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        print_result(results)
    return captured.getvalue()


# --- worker -------------------------------------------------------------------------------


def add_worker(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "worker",
        help="run nodes sent by `kenornir CONFIG --broker URL` (one per site, or more)",
        description="A Celery worker (threads) that takes the nodes of the queue "
        "`kenornir.site.NAME` for each --site (without --site: those of the queue `kenornir`, "
        "nodes that have no site), and runs them as a local run would: the "
        "node's ${NAME} secrets from this environment, its key, copyFrom and hook files from "
        "this machine's paths, the keadm packages prepared here and used only when their "
        "digests are the ones the controller verified. SIGTERM or Ctrl-C: the running nodes "
        "finish first.",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="the Redis the controller uses, as this machine reaches it (default: $KENORNIR_BROKER"
        "; ${NAME} in it is read from the environment)",
    )
    parser.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="NAME",
        help="take the nodes whose `site` is NAME, and only those of the sites given (repeatable)",
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=10, metavar="N", help="nodes at once (10)"
    )
    parser.add_argument(
        "--name", metavar="NAME", help="the name node records give this worker (default: hostname)"
    )
    add_cache_dir_argument(parser.add_argument_group("packages"))
    parser.set_defaults(command=worker)


def worker(args: argparse.Namespace) -> int:
    from kenornir.distributed.url import BROKER_ENV, BrokerError, resolved_url

    given = args.broker or os.environ.get(BROKER_ENV)
    if not given:
        print(f"kenornir: error: give --broker URL (or set {BROKER_ENV})", file=sys.stderr)
        return EXIT_USAGE
    try:
        url = resolved_url(given, os.environ)
    except BrokerError as exc:
        print(f"kenornir: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from kenornir.config.model import SITE_NAME, SITE_NAME_RULE

    sites = _split(args.site)
    for site in sites:
        if not SITE_NAME.fullmatch(site):
            print(
                f"kenornir: error: --site {site!r}: not a site name ({SITE_NAME_RULE})",
                file=sys.stderr,
            )
            return EXIT_USAGE
    from kenornir.packages import PackageError, default_cache_root, private_cache_root

    try:  # an unsafe cache dir stops the worker now, not each node it takes
        private_cache_root(args.cache_dir or default_cache_root())
    except PackageError as exc:
        print(f"kenornir: error: {exc}", file=sys.stderr)
        return EXIT_PREPARE_FAILED
    from kenornir.distributed.worker import WorkerSettings, run_worker

    settings = WorkerSettings(url, sites=sites, concurrency=args.concurrency)
    if args.name:
        settings = dataclasses.replace(settings, name=args.name)
    if args.cache_dir:
        settings = dataclasses.replace(settings, cache_dir=args.cache_dir)
    run_worker(settings)
    return EXIT_OK


# --- prepare ------------------------------------------------------------------------------


def add_prepare(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "prepare",
        help="only prepare (download or unpack, verify, compress) the keadm packages",
        description="The controller side alone: fill the cache with verified keadm binaries "
        "and their zstd frames, "
        "e.g. before going air-gapped. Exit 0, 3 when a package cannot be prepared, 130 on "
        "Ctrl-C.",
    )
    add_config_argument(parser)
    add_package_arguments(parser.add_argument_group("packages"))
    parser.set_defaults(command=prepare)


def prepare(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return EXIT_USAGE
    from kenornir.batch import RunOptions, arches_to_prepare
    from kenornir.batch import prepare as prepare_packages
    from kenornir.packages import PackageError
    from kenornir.template import mask_secrets

    if not arches_to_prepare(config):
        print("nothing to prepare: every node has keadmBinDir")
        return EXIT_OK
    options = RunOptions(
        cache_dir=args.cache_dir,
        verify_checksum=False if args.insecure_skip_checksum else None,
    )
    progress = DownloadProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        packages = prepare_packages(config, options, progress)
    except PackageError as exc:
        failure = mask_secrets(str(exc), config.secrets)
        print(f"kenornir: preparing keadm packages failed: {failure}", file=sys.stderr)
        return EXIT_PREPARE_FAILED
    except KeyboardInterrupt:
        print("kenornir: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if progress is not None:
            progress.close()
    for arch, package in sorted(packages.items()):
        check = "sha512 verified" if package.checksum_verified else "no checksum file: NOT verified"
        print(
            f"{arch:6} {package.version}  {package.source:8} {package.binary}  "
            f"{package.binary_size} bytes, sha256 {package.binary_sha256[:16]}…, {check}"
        )
    return EXIT_OK


class DownloadProgress:
    """One redrawn line on a TTY: bytes fetched per arch."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.done: dict[str, tuple[int, int | None]] = {}
        self.lock = threading.Lock()

    def __call__(self, arch: str, done: int, total: int | None) -> None:
        with self.lock:
            self.done[arch] = (done, total)
            parts = [
                f"{name} {d >> 20}/{t >> 20 if t else '?'} MiB"
                for name, (d, t) in sorted(self.done.items())
            ]
            self.stream.write("\r\033[K" + "  ".join(parts))
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()
