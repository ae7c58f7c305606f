"""The ready hook scripts in tasks/, run on lab nodes the way kenornir runs a preRun/postRun."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.lab import Lab, LabFactory

pytestmark = pytest.mark.lab

TASKS = Path(__file__).parent.parent / "tasks"
HOOK_SCRIPTS = ("preflight.sh", "verify-edgecore.sh", "reset-cleanup.sh")
STAGE_DIR = "/tmp/kubeedge/keadm"
SETTINGS_FILE = "kenornir-hooks.env"
LOADER = re.compile(r"^# --- settings loader.*?^# --- end of settings loader ---$", re.M | re.S)
# The lab node's /var/lib/kubeedge is a 64 MiB tmpfs: below preflight's 500 MiB default.
LAB_INSTALL_MB = "32"
# A real unix socket file in the node's own /tmp standing in for containerd's: the hook only
# needs it to exist, and the node's /run is this machine's, which tests must not touch.
RUNTIME_SOCKET = "/tmp/runtime/containerd.sock"
MAKE_RUNTIME_SOCKET = (
    "mkdir -p /tmp/runtime && /usr/bin/python3 -c 'import socket, sys; "
    f"socket.socket(socket.AF_UNIX).bind(sys.argv[1])' {RUNTIME_SOCKET}"
)


@pytest.fixture
def cloudcore() -> Iterator[str]:
    """A listening TCP server on 127.0.0.1 standing in for cloudcore: HOST:PORT."""

    class Accept(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            pass

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Accept) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join()


@pytest.fixture
def closed_port() -> Iterator[str]:
    """HOST:PORT that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{bound.getsockname()[1]}"


def stage(lab: Lab, node: str, name: str, text: str | None = None) -> None:
    """Upload a file to the node's staging dir (a hook from tasks/ unless text is given)."""
    content = (TASKS / name).read_text() if text is None else text
    path = f"{STAGE_DIR}/{name}"
    result = lab.exec(node, f"mkdir -p {STAGE_DIR} && cat >{path} && chmod 0755 {path}", content)
    assert result.returncode == 0, result.stderr


def hook_command(name: str, env: Mapping[str, str]) -> str:
    """How kenornir runs a hook (cd to the staging dir, /bin/bash ./name), plus test settings."""
    settings = " ".join(shlex.quote(f"{key}={value}") for key, value in env.items())
    return f"cd {STAGE_DIR} && env {settings} /bin/bash ./{name}"


def run_hook(
    lab: Lab, node: str, name: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return lab.exec(node, hook_command(name, env or {}))


def node_exec(lab: Lab, node: str, command: str) -> str:
    result = lab.exec(node, command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_lines(output: str) -> dict[str, str]:
    """preflight's one line per check: {check: outcome}."""
    found = re.findall(r"^preflight: (ok|skip|FAIL) +(\S+) ", output, re.M)
    return {check: outcome for outcome, check in found}


def edgecore_pids() -> list[int]:
    """Live processes named edgecore on this machine (lab nodes share its PID namespace)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name_and_state = stat.read_text().split(" (", 1)[1]
        except OSError:
            continue  # exited meanwhile
        name, state = name_and_state.rsplit(") ", 1)
        if name == "edgecore" and not state.startswith("Z"):
            pids.append(int(stat.parent.name))
    return pids


# The scripts themselves.


def test_every_hook_parses_and_carries_the_same_settings_loader() -> None:
    loaders = set()
    for name in HOOK_SCRIPTS:
        subprocess.run(["bash", "-n", str(TASKS / name)], check=True)
        match = LOADER.search((TASKS / name).read_text())
        assert match is not None, f"{name} has no settings loader block"
        loaders.add(match.group())
    assert len(loaders) == 1, "the settings loader blocks have drifted apart"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_hooks_pass_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", *(str(TASKS / name) for name in HOOK_SCRIPTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("name", "setting", "value"),
    [
        ("preflight.sh", "PREFLIGHT_CLOUDCORE", "cloudcore-without-port"),
        ("preflight.sh", "PREFLIGHT_MIN_STAGING_MB", "200MB"),
        ("preflight.sh", "PREFLIGHT_SKIP_RUNTIME", "yes"),
        ("verify-edgecore.sh", "VERIFY_TIMEOUT", "-1"),
        ("reset-cleanup.sh", "RESET_CLEANUP_CNI", "true"),
    ],
)
def test_an_invalid_setting_exits_2_naming_it(
    tmp_path: Path, name: str, setting: str, value: str
) -> None:
    shutil.copy(TASKS / name, tmp_path)
    result = subprocess.run(
        ["/bin/bash", f"./{name}"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", setting: value},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{setting} must be" in result.stderr and value in result.stderr


# preflight.sh


def test_preflight_passes_with_everything_in_place(make_lab: LabFactory, cloudcore: str) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "preflight.sh")
    node_exec(lab, node, MAKE_RUNTIME_SOCKET)
    reference_time = str(int(time.time()))

    result = run_hook(
        lab,
        node,
        "preflight.sh",
        {
            "PREFLIGHT_RUNTIME_SOCKET": RUNTIME_SOCKET,
            "PREFLIGHT_CLOUDCORE": cloudcore,
            "PREFLIGHT_MIN_INSTALL_MB": LAB_INSTALL_MB,
            "PREFLIGHT_REFERENCE_TIME": reference_time,
        },
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert check_lines(result.stdout) == dict.fromkeys(
        ("root", "arch", "staging-disk", "install-disk", "runtime", "cloudcore", "clock"), "ok"
    )
    assert f"runtime      container runtime socket {RUNTIME_SOCKET}" in result.stdout
    assert f"{cloudcore} accepts connections" in result.stdout
    assert "x86_64 (keadm amd64)" in result.stdout
    assert result.stderr == ""


def test_preflight_lists_every_failure_at_once(make_lab: LabFactory, closed_port: str) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "preflight.sh")

    result = run_hook(
        lab,
        node,
        "preflight.sh",
        {
            "PREFLIGHT_RUNTIME_SOCKET": RUNTIME_SOCKET,
            "PREFLIGHT_CLOUDCORE": closed_port,
            "PREFLIGHT_MIN_STAGING_MB": "99999999",
            "PREFLIGHT_CONNECT_TIMEOUT": "3",
        },
    )

    assert result.returncode == 1
    assert check_lines(result.stdout) == {
        "root": "ok",
        "arch": "ok",
        "staging-disk": "FAIL",
        # The default 500 MiB does not fit the node's 64 MiB /var/lib/kubeedge.
        "install-disk": "FAIL",
        "runtime": "FAIL",
        "cloudcore": "FAIL",
        "clock": "ok",
    }
    summary = result.stderr.splitlines()
    assert summary[0].endswith("is not ready for keadm, 4 of 7 checks failed:")
    assert [line.split(":")[0] for line in summary[1:]] == [
        "  - staging-disk",
        "  - install-disk",
        "  - runtime",
        "  - cloudcore",
    ]
    assert re.fullmatch(
        rf"  - staging-disk: only \d+ MiB free in {STAGE_DIR}, need 99999999 MiB", summary[1]
    )
    assert re.fullmatch(
        r"  - install-disk: only \d+ MiB free in /var/lib/kubeedge, need 500 MiB", summary[2]
    )
    assert summary[3] == f"  - runtime: no container runtime socket: none of {RUNTIME_SOCKET}"
    assert summary[4] == f"  - cloudcore: {closed_port}: Connection refused"


def test_preflight_names_the_keadm_build_for_each_lab_arch(make_lab: LabFactory) -> None:
    lab = make_lab(3, arch_mix=True)
    arches = {}
    for lab_node in lab.nodes:
        stage(lab, lab_node.name, "preflight.sh")
        result = run_hook(lab, lab_node.name, "preflight.sh", {"PREFLIGHT_SKIP_RUNTIME": "1"})
        match = re.search(r"^preflight: ok   arch +(.*)$", result.stdout, re.M)
        assert match is not None, result.stdout
        arches[lab_node.arch] = match.group(1)
    assert arches == {
        "x86_64": "x86_64 (keadm amd64)",
        "aarch64": "aarch64 (keadm arm64)",
        "armv7l": "armv7l (keadm arm)",
    }


def test_preflight_as_a_non_root_user_fails_the_root_check(make_lab: LabFactory) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "preflight.sh")
    command = hook_command(
        "preflight.sh",
        {"PREFLIGHT_SKIP_RUNTIME": "1", "PREFLIGHT_MIN_INSTALL_MB": LAB_INSTALL_MB},
    )

    result = subprocess.run(
        lab.ssh_command(node, command, user=lab.edge_user),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert check_lines(result.stdout)["root"] == "FAIL"
    assert re.search(
        rf"^  - root: running as uid \d+ \({lab.edge_user}\), keadm needs root", result.stderr, re.M
    )
    assert "1 of 7 checks failed" in result.stderr


def test_preflight_reads_the_settings_file_and_the_environment_wins(
    make_lab: LabFactory, cloudcore: str
) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "preflight.sh")
    node_exec(lab, node, MAKE_RUNTIME_SOCKET)
    stage(
        lab,
        node,
        SETTINGS_FILE,
        "# shipped through copyFrom\n"
        f'PREFLIGHT_RUNTIME_SOCKET="{RUNTIME_SOCKET}"\n'
        f"export PREFLIGHT_CLOUDCORE={cloudcore}\r\n"
        f"  PREFLIGHT_MIN_INSTALL_MB='{LAB_INSTALL_MB}'\n"
        "VERIFY_TIMEOUT=5\n"
        # Before the first install the dir is missing: measured at its nearest existing parent.
        "PREFLIGHT_INSTALL_DIR=/var/lib/kubeedge/not/made/yet\n"
        "\n"
        "PREFLIGHT_MIN_STAGING_MB=1",
    )

    from_file = run_hook(lab, node, "preflight.sh")
    overridden = run_hook(lab, node, "preflight.sh", {"PREFLIGHT_MIN_STAGING_MB": "99999999"})

    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    assert f"container runtime socket {RUNTIME_SOCKET}" in from_file.stdout
    assert f"{cloudcore} accepts connections" in from_file.stdout
    assert re.search(r"MiB free in /var/lib/kubeedge \(need 32\)", from_file.stdout)
    assert overridden.returncode == 1
    assert "need 99999999 MiB" in overridden.stderr


def test_preflight_warns_about_a_malformed_settings_line(make_lab: LabFactory) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "preflight.sh")
    stage(lab, node, SETTINGS_FILE, "PREFLIGHT_SKIP_RUNTIME=1\nPREFLIGHT_MIN_INSTALL_MB 32\n")

    result = run_hook(lab, node, "preflight.sh")

    assert f"ignoring line 2 of {STAGE_DIR}/{SETTINGS_FILE}: not KEY=VALUE" in result.stderr
    assert "runtime      PREFLIGHT_SKIP_RUNTIME=1" in result.stdout


def test_preflight_fails_a_clock_far_off_the_reference(make_lab: LabFactory) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "preflight.sh")
    an_hour_ago = str(int(time.time()) - 3600)

    result = run_hook(
        lab,
        node,
        "preflight.sh",
        {
            "PREFLIGHT_SKIP_RUNTIME": "1",
            "PREFLIGHT_MIN_INSTALL_MB": LAB_INSTALL_MB,
            "PREFLIGHT_REFERENCE_TIME": an_hour_ago,
        },
    )

    assert result.returncode == 1
    assert check_lines(result.stdout)["clock"] == "FAIL"
    assert re.search(
        r"^  - clock: 36\d\ds ahead of the reference time, over 300s$", result.stderr, re.M
    )


def test_preflight_fails_a_clock_from_before_2020(make_lab: LabFactory) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "preflight.sh")
    # A node that booted without an RTC: its date(1) says 2019-01-01.
    node_exec(
        lab,
        node,
        "mkdir -p /tmp/no-rtc && printf '#!/bin/sh\\necho 1546300800 2019\\n' "
        ">/tmp/no-rtc/date && chmod 0755 /tmp/no-rtc/date",
    )

    result = lab.exec(
        node,
        hook_command(
            "preflight.sh",
            {
                "PATH": "/tmp/no-rtc:/usr/sbin:/usr/bin:/sbin:/bin",
                "PREFLIGHT_SKIP_RUNTIME": "1",
                "PREFLIGHT_MIN_INSTALL_MB": LAB_INSTALL_MB,
            },
        ),
    )

    assert result.returncode == 1
    assert "  - clock: the clock says it is 2019: set the time (no RTC or NTP?)" in result.stderr


# verify-edgecore.sh


def test_verify_edgecore_waits_until_an_edgecore_process_runs(make_lab: LabFactory) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "verify-edgecore.sh")
    command = hook_command("verify-edgecore.sh", {"VERIFY_TIMEOUT": "60", "VERIFY_INTERVAL": "1"})
    hook = subprocess.Popen(
        lab.ssh_command(node, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    edgecore_pid = None
    try:
        assert hook.stdout is not None
        first_line = hook.stdout.readline()
        # Only once the hook has seen no edgecore does one start: a process named edgecore.
        started = node_exec(
            lab,
            node,
            "mkdir -p /tmp/x && cp /bin/sleep /tmp/x/edgecore && "
            "{ /tmp/x/edgecore 120 </dev/null >/dev/null 2>&1 & echo $!; }",
        )
        edgecore_pid = int(started)
        rest, errors = hook.communicate(timeout=60)
    finally:
        if hook.poll() is None:
            hook.kill()
            hook.wait()
        if edgecore_pid in edgecore_pids():
            lab.exec(node, f"kill {edgecore_pid}")

    assert first_line == "verify-edgecore: waiting for a process named edgecore: 0s of 60s\n"
    assert hook.returncode == 0, rest + errors
    assert rest.splitlines()[-1].startswith(
        "verify-edgecore: edgecore is up (a process named edgecore) after "
    )


def test_verify_edgecore_times_out_with_the_log_tail(make_lab: LabFactory) -> None:
    assert edgecore_pids() == [], "an edgecore process runs on this machine: the test cannot tell"
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "verify-edgecore.sh")
    node_exec(lab, node, "seq -f 'edgecore log line %g' 1 50 >/tmp/edgecore.log")

    result = run_hook(
        lab,
        node,
        "verify-edgecore.sh",
        {
            "VERIFY_TIMEOUT": "3",
            "VERIFY_INTERVAL": "1",
            "VERIFY_LOG_FILE": "/tmp/edgecore.log",
            "VERIFY_LOG_LINES": "5",
        },
    )

    assert result.returncode == 1
    # bash's $SECONDS counts wall-clock second boundaries: the first wait may already say 1s.
    waiting = r"verify-edgecore: waiting for a process named edgecore: [01]s of 3s"
    assert re.search(waiting, result.stdout), result.stdout
    errors = result.stderr.splitlines()
    assert re.fullmatch(
        r"verify-edgecore: timed out: edgecore is not up after \d+s "
        r"\(watched a process named edgecore\)",
        errors[0],
    )
    assert errors[1:] == [
        "verify-edgecore: last 5 lines of /tmp/edgecore.log:",
        *(f"edgecore log line {number}" for number in range(46, 51)),
    ]


# reset-cleanup.sh

RESET_SETTINGS = (
    "RESET_CONFIG_DIR=/tmp/node-etc/kubeedge\n"
    "RESET_CNI_DIR=/tmp/node-etc/cni/net.d/\n"
    "RESET_EDGECORE_UNIT=/tmp/node-etc/systemd/system/edgecore.service\n"
)
LEFTOVERS = (
    "mkdir -p /tmp/node-etc/kubeedge/config /tmp/node-etc/cni/net.d /tmp/node-etc/systemd/system"
    " /var/lib/kubeedge/.hidden /var/lib/kubeedge/pods/volume"
    " && touch /tmp/node-etc/kubeedge/config/edgecore.yaml /var/lib/kubeedge/edgecore.db"
    " /var/lib/kubeedge/.hidden/state /var/lib/kubeedge/pods/volume/data"
    f" /tmp/node-etc/systemd/system/edgecore.service {STAGE_DIR}/keadm"
    " && cd /tmp/node-etc/cni/net.d && touch 10-kubeedge.conflist edgemesh.conf 10-bridge.conf"
)


def remaining(lab: Lab, node: str) -> list[str]:
    listing = node_exec(
        lab, node, f"find /tmp/node-etc /var/lib/kubeedge {STAGE_DIR} -mindepth 1 | sort"
    )
    return listing.splitlines()


def test_reset_cleanup_removes_leftovers_and_is_idempotent(make_lab: LabFactory) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "reset-cleanup.sh")
    stage(lab, node, SETTINGS_FILE, RESET_SETTINGS)
    node_exec(lab, node, LEFTOVERS)

    first = run_hook(lab, node, "reset-cleanup.sh")
    after_first = remaining(lab, node)
    with_cni = run_hook(lab, node, "reset-cleanup.sh", {"RESET_CLEANUP_CNI": "1"})
    after_cni = remaining(lab, node)
    again = run_hook(lab, node, "reset-cleanup.sh", {"RESET_CLEANUP_CNI": "1"})

    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(first.stdout.splitlines()) == sorted(
        [
            # systemd does not run in the lab: the unit cannot be disabled, so it stays.
            "reset-cleanup: kept /tmp/node-etc/systemd/system/edgecore.service:"
            " systemd is not running to disable it",
            "reset-cleanup: removed /tmp/node-etc/kubeedge",
            "reset-cleanup: removed /var/lib/kubeedge/.hidden",
            "reset-cleanup: removed /var/lib/kubeedge/edgecore.db",
            "reset-cleanup: removed /var/lib/kubeedge/pods",
            f"reset-cleanup: removed {STAGE_DIR}/keadm",
            "reset-cleanup: removed 5 path(s)",
        ]
    )
    assert after_first == [
        "/tmp/kubeedge/keadm/kenornir-hooks.env",
        "/tmp/kubeedge/keadm/reset-cleanup.sh",
        "/tmp/node-etc/cni",
        "/tmp/node-etc/cni/net.d",
        "/tmp/node-etc/cni/net.d/10-bridge.conf",
        "/tmp/node-etc/cni/net.d/10-kubeedge.conflist",
        "/tmp/node-etc/cni/net.d/edgemesh.conf",
        "/tmp/node-etc/systemd",
        "/tmp/node-etc/systemd/system",
        "/tmp/node-etc/systemd/system/edgecore.service",
    ]
    assert with_cni.returncode == 0
    assert "removed /tmp/node-etc/cni/net.d/10-kubeedge.conflist" in with_cni.stdout
    assert "removed /tmp/node-etc/cni/net.d/edgemesh.conf" in with_cni.stdout
    assert set(after_first) - set(after_cni) == {
        "/tmp/node-etc/cni/net.d/10-kubeedge.conflist",
        "/tmp/node-etc/cni/net.d/edgemesh.conf",
    }
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1] == "reset-cleanup: nothing left to remove"
    assert node_exec(lab, node, "test -d /var/lib/kubeedge && echo kept") == "kept\n"


def test_reset_cleanup_fails_on_a_mount_left_inside_the_install_dir(
    make_lab: LabFactory,
) -> None:
    lab = make_lab(1)
    node = lab.nodes[0].name
    stage(lab, node, "reset-cleanup.sh")
    stage(lab, node, SETTINGS_FILE, RESET_SETTINGS)
    # A pod volume still mounted (in the node's own mount namespace): rm must not cross into it.
    node_exec(
        lab,
        node,
        "mkdir -p /var/lib/kubeedge/pods/volume && "
        "mount -t tmpfs kenornir-test-volume /var/lib/kubeedge/pods/volume && "
        "touch /var/lib/kubeedge/pods/volume/data /var/lib/kubeedge/edgecore.db",
    )
    try:
        result = run_hook(lab, node, "reset-cleanup.sh")
        survivors = remaining(lab, node)
    finally:
        node_exec(lab, node, "umount /var/lib/kubeedge/pods/volume")

    assert result.returncode == 1
    assert "reset-cleanup: removed /var/lib/kubeedge/edgecore.db" in result.stdout
    assert "could not remove 1 path(s):\n  - /var/lib/kubeedge/pods\n" in result.stderr
    assert "/var/lib/kubeedge/pods/volume/data" in survivors


@pytest.mark.parametrize("unsafe", ["/", "//", "relative/dir", "/var/lib/..", "/a/./b", ""])
def test_reset_cleanup_guard_refuses_unsafe_paths(unsafe: str) -> None:
    # Only the guard function runs here: a broken guard must never get to remove anything.
    guard = re.search(
        r"^safe_path\(\) \{\n.*?^\}\n", (TASKS / "reset-cleanup.sh").read_text(), re.M | re.S
    )
    assert guard is not None
    result = subprocess.run(
        ["bash", "-c", f'{guard.group()}safe_path "$1"', "guard", unsafe], check=False
    )
    assert result.returncode == 1


@pytest.mark.parametrize("unsafe_dir", ["relative", "{tmp}/inside/.."])
def test_reset_cleanup_refuses_an_unsafe_setting_before_removing_anything(
    tmp_path: Path, unsafe_dir: str
) -> None:
    shutil.copy(TASKS / "reset-cleanup.sh", tmp_path)
    for sentinel in ("relative/keep", "inside/keep", "keadm"):
        (tmp_path / sentinel).parent.mkdir(exist_ok=True)
        (tmp_path / sentinel).touch()
    setting = unsafe_dir.format(tmp=tmp_path)

    result = subprocess.run(
        ["/bin/bash", "./reset-cleanup.sh"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "RESET_INSTALL_DIR": setting,
            "RESET_CONFIG_DIR": str(tmp_path / "no-config"),
        },
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 2
    assert f"RESET_INSTALL_DIR must be an absolute path other than /, not '{setting}'" in (
        result.stderr
    )
    assert all((tmp_path / sentinel).exists() for sentinel in ("relative/keep", "inside/keep"))
    assert (tmp_path / "keadm").exists()
