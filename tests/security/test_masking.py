"""Secrets masked everywhere: every spelling of keadm's token, URL credentials, `${NAME}` values,
JSON and log escapes, dotted node names, the CLI's own warnings, and a full lab run."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from nornir.core import Nornir
from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory
from nornir.core.task import Result, Task
from nornir.plugins.runners import ThreadedRunner

from kenornir.cli import main
from kenornir.config import ConfigError, parse_config
from kenornir.nodelog import node_logger
from kenornir.report import RunRecorder, Terminal, append_event, route_library_logs, write_report
from kenornir.template import MASK, mask_record, mask_secrets, token_values, url_secrets
from tests.batch_configs import LAB_TOKEN
from tests.faults.conftest import FaultLab, FaultRun, leaked_secrets, secret_spellings
from tests.http_server import LocalHTTPServer
from tests.lab.inventory import batch_config

TOKEN = "9f1c2bd0e8a4.eyJhbGciOiJSUzI1NiJ9.tok"
# Any text at all as a secret, but not only `*`s: those would be found again in the mask.
SECRET_TEXT = st.text(min_size=1, max_size=12).filter(lambda text: text.strip("*"))


# --- keadm's token, in every spelling keadm (cobra/pflag) takes ------------------------------


# Each command as written, and as shown once its token is masked.
TOKEN_SPELLINGS = {
    f"join --token={TOKEN}": "join --token=***",
    f"join --token {TOKEN}": "join --token ***",
    f"join -t {TOKEN}": "join -t ***",
    f"join -t={TOKEN}": "join -t=***",
    f"join -t{TOKEN}": "join ***",  # no word boundary between -t and the token
    f"join -ht {TOKEN}": "join -ht ***",  # -h takes no value: -t follows in the same word
    f"join --token='{TOKEN}' -e 1.2.3.4:10000": "join --token=*** -e 1.2.3.4:10000",
    f'join -t "{TOKEN}"': "join -t ***",
    f"join -t'{TOKEN}'": "join ***",
    f'join "-t={TOKEN}"': "join ***",  # one quote around flag and token
}


def test_every_token_spelling_keadm_accepts_is_found_and_masked() -> None:
    found = {command: token_values(command) for command in TOKEN_SPELLINGS}
    assert not [command for command, values in found.items() if TOKEN not in values]
    assert {command: mask_secrets(command, found[command]) for command in found} == (
        TOKEN_SPELLINGS
    )


def test_the_word_after_a_bare_token_flag_is_the_token_whatever_it_looks_like() -> None:
    assert token_values("join --token -t -e x") == ["-t"]
    assert token_values("join -t --token=y") == ["--token=y"]


def test_a_quoted_token_with_an_escape_is_found_as_keadm_gets_it_and_as_written() -> None:
    command = r'join -t "a\"b c" --token=x\ y'
    assert token_values(command) == ['a"b c', r'"a\"b c"', "x y", r"x\ y"]
    assert mask_secrets(command, token_values(command)) == "join -t *** --token=***"


@pytest.mark.parametrize(
    "command",
    [
        "join --tokenizer=x --cloudcore-ipport=1.2.3.4:10000",
        "join -i edge-t1 -p tcp -e 1.2.3.4:10000",
        "join --token= -t= --edgenode-name=edge-1",  # empty values: nothing to hide
        "join -h",
    ],
)
def test_words_beside_the_token_are_no_token(command: str) -> None:
    assert token_values(f"{command} -t {TOKEN}") == [TOKEN]


@settings(max_examples=300)
@given(
    token=st.text(min_size=1, max_size=20).filter(
        lambda text: text.strip("*") and "\x00" not in text
    ),
    form=st.sampled_from(["--token={}", "--token {}", "-t {}", "-t={}", "-t{}"]),
)
def test_any_token_in_any_form_is_masked_where_keadm_reads_it(token: str, form: str) -> None:
    if form == "-t{}" and token.startswith("="):
        token = "x" + token  # `-t=X` is the -t= form: keadm would get X, not =X
    command = "join " + form.format(shlex.quote(token))

    values = token_values(command)
    masked = mask_secrets(command, values)

    assert token in values
    # The word keadm reads its token from, without the flag written in it.
    flag = form.removesuffix("{}") if form.endswith("={}") else ""
    assert token not in shlex.split(masked)[-1].removeprefix(flag)


# --- URL credentials, `${NAME}` values and the rest of a config's secrets -------------------

URL_PASSWORD = "mirror%40pass-3141"  # as written in the URL; decoded: mirror@pass-3141
BASE_CONFIG: dict[str, Any] = {
    "keadm": {
        "keadmVersion": "v1.20.0",
        "archGroup": ["amd64"],
        "download": {"url": f"https://deploy:{URL_PASSWORD}@mirror.example/kubeedge"},
        "cmdTplArgs": {
            "cmd": "join",
            "tk": "shorthand-tok-5150",
            "site": "${SITE_FROM_ENV}",
            "joinSecret": "named-like-a-secret-77",
        },
    },
    "nodes": [
        {
            "nodeName": "edge.1",
            "keadmCmd": "{{.cmd}} -t {{.tk}} --labels=site={{.site}} --x={{.joinSecret}}",
            "ssh": {
                "ip": "10.0.0.11",
                "username": "root",
                "auth": {"type": "password", "passwordAuth": {"password": 'pw"with\\ä'}},
            },
        },
        {
            "nodeName": "edge",
            "keadmCmd": "join --token spaced-tok-6262 --edgenode-name=edge",
            "ssh": {"ip": "10.0.0.12", "username": "root"},
        },
    ],
}
ENVIRONMENT = {"SITE_FROM_ENV": "north-site-from-env"}
CONFIG_SECRETS = [
    "shorthand-tok-5150",
    "north-site-from-env",
    "named-like-a-secret-77",
    'pw"with\\ä',
    "spaced-tok-6262",
    URL_PASSWORD,
    "mirror@pass-3141",
]


def test_every_kind_of_secret_is_a_secret_of_the_config() -> None:
    config = parse_config(yaml.safe_dump(BASE_CONFIG), env=ENVIRONMENT)

    assert set(config.secrets) == set(CONFIG_SECRETS)
    # The config's own secrets (environment, URL) are every node's: each node log masks them.
    for secret in ("north-site-from-env", URL_PASSWORD, "mirror@pass-3141"):
        assert all(secret in node.secrets for node in config.nodes)
    assert config.nodes[0].keadm_cmd_masked == "join -t *** --labels=site=*** --x=***"


def test_url_credentials_as_written_and_decoded() -> None:
    urls = {
        "https://user:p%40ss@mirror/x": ["p%40ss", "p@ss"],
        "https://user:plain@mirror:8443/x?y#z": ["plain"],
        "https://ghp-token-only@mirror/x": ["ghp-token-only"],  # a lone token@ is a credential
        "https://mirror/releases/pkg@v1/x": [],  # an @ in the path is no credential
        "https://mirror/x": [],
    }
    assert {url: url_secrets(url) for url in urls} == urls


def test_a_bad_url_with_credentials_is_reported_without_them() -> None:
    data = json.loads(json.dumps(BASE_CONFIG))
    data["keadm"]["download"]["url"] = f"https://deploy:{URL_PASSWORD}@mirror example/x"

    with pytest.raises(ConfigError) as raised:
        parse_config(yaml.safe_dump(data), env=ENVIRONMENT)

    assert "keadm.download.url: 'https://deploy:***@mirror example/x' is not" in str(raised.value)


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_validate_and_plan_show_no_secret(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    config = write_config(tmp_path, BASE_CONFIG)

    code = main([command, str(config)])
    out, err = capsys.readouterr()

    assert code == 0, err
    assert "from:     https://deploy:***@mirror.example/kubeedge/keadm-v1.20.0" in out
    if command == "plan":
        assert "./keadm join -t *** --labels=site=*** --x=***" in out
        assert "./keadm join --token *** --edgenode-name=edge" in out
    for secret in CONFIG_SECRETS:
        assert secret not in out + err


def test_the_clis_warnings_are_masked_once_a_config_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    # A fresh handler list: main() puts its stderr warning handler on capsys's stderr.
    monkeypatch.setattr(logging.getLogger("kenornir"), "handlers", [])
    assert main(["validate", str(write_config(tmp_path, BASE_CONFIG))]) == 0
    capsys.readouterr()

    warned = logging.getLogger("kenornir.packages")
    warned.warning("no checksum at https://deploy:%s@mirror.example/x", URL_PASSWORD)
    warned.warning("token %r of %s", "shorthand-tok-5150", "north-site-from-env")
    err = capsys.readouterr().err

    assert err.splitlines() == [
        "kenornir: warning: no checksum at https://deploy:***@mirror.example/x",
        "kenornir: warning: token '***' of ***",
    ]


def test_secrets_from_the_environment_do_not_make_the_file_look_exposed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The token read from the environment happens to be in the file too (as a label): no
    # secret is written in the file, so no warning about the file's mode.
    data = json.loads(json.dumps(BASE_CONFIG))
    data["keadm"]["download"] = {}
    data["keadm"]["cmdTplArgs"] = {"cmd": "join", "token": "${TOKEN_FROM_ENV}"}
    data["nodes"] = data["nodes"][1:]
    data["nodes"][0]["keadmCmd"] = "{{.cmd}} --token={{.token}}"
    data["nodes"][0]["labels"] = {"note": "shorthand-tok-5150"}
    path = write_config(tmp_path, data)
    path.chmod(0o644)
    monkeypatch.setenv("TOKEN_FROM_ENV", "shorthand-tok-5150")

    assert main(["validate", str(path)]) == 0
    assert "open to group or others" not in capsys.readouterr().err


# --- JSON records and log lines: masked before they are escaped ------------------------------

ESCAPED_SECRET = 'q"u\\o\u00e9te\n'


@settings(max_examples=200)
@given(data=st.data(), secret=SECRET_TEXT)
def test_a_secret_anywhere_in_a_record_masks_to_valid_json_without_it(
    data: st.DataObject, secret: str
) -> None:
    safe = st.text(alphabet=" =:/'\"\\", max_size=3)  # edges that never join a secret's word
    with_secret = st.builds(lambda a, b: a + secret + b, safe, safe)
    text = st.text(max_size=8).filter(lambda t: secret not in t) | with_secret
    record = data.draw(
        st.recursive(
            text | st.integers() | st.none(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
            max_leaves=12,
        )
    )
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory)
        append_event(run_dir, {"event": "x", "record": record}, [secret])
        write_report(run_dir, {"record": record}, [secret])
        written = [
            json.loads((run_dir / name).read_text(encoding="utf-8"))["record"]
            for name in ("events.jsonl", "report.json")
        ]
    assert not [text for text in strings_in(written) if secret in text]


def strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *strings_in(item)]]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return []


def test_report_and_events_hold_no_escaped_secret(tmp_path: Path) -> None:
    record = {"node": "edge-1", "reason": f"keadm failed: {ESCAPED_SECRET} refused"}

    append_event(tmp_path, record, [ESCAPED_SECRET])
    write_report(tmp_path, {"nodes": [record]}, [ESCAPED_SECRET])

    for name in ("events.jsonl", "report.json"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert not [spelling for spelling in secret_spellings(ESCAPED_SECRET) if spelling in text]
        assert "keadm failed: *** refused" in json.dumps(json.loads(text))


def test_the_leak_check_finds_a_secret_json_or_repr_escaped(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps({"reason": ESCAPED_SECRET}))
    run = FaultRun(1, "", f"error: {ESCAPED_SECRET!r}", tmp_path)

    leaks = leaked_secrets([ESCAPED_SECRET], run.outputs())

    assert [leak.split(":")[0] for leak in leaks] == [
        "secret #1 in stderr",
        "secret #1 in report.json",
    ]


def test_mask_record_masks_keys_and_values_and_keeps_the_rest() -> None:
    record = {"s3cret-key": ["a s3cret-key b", 7, None, ("s3cret-key",)], "n": 1.5}
    assert mask_record(record, ["s3cret-key"]) == {MASK: [f"a {MASK} b", 7, None, [MASK]], "n": 1.5}


def test_log_lines_hold_no_secret_in_any_spelling(tmp_path: Path) -> None:
    run_log = tmp_path / "run.log"
    restore = route_library_logs(run_log, [ESCAPED_SECRET])
    try:
        log = logging.getLogger("paramiko.transport")
        log.info("auth with %r", ESCAPED_SECRET)
        log.info("bytes %r", ESCAPED_SECRET.encode())
        log.info("json %s", json.dumps({"password": ESCAPED_SECRET}))
        try:
            raise ValueError(ESCAPED_SECRET)
        except ValueError:
            log.exception("failed")
    finally:
        restore()

    text = run_log.read_text(encoding="utf-8")
    assert text.count(MASK) >= 4
    assert not [spelling for spelling in secret_spellings(ESCAPED_SECRET) if spelling in text]


# --- node loggers: never another node's child -----------------------------------------------


def ancestors(logger: logging.Logger) -> list[logging.Logger]:
    found = []
    parent = logger.parent
    while parent is not None:
        found.append(parent)
        parent = parent.parent
    return found


@given(names=st.lists(st.text(min_size=1, max_size=10), min_size=2, max_size=2, unique=True))
def test_a_node_logger_is_never_another_nodes_ancestor(names: list[str]) -> None:
    first, second = (node_logger(name) for name in names)
    assert first is not second
    assert first not in ancestors(second) and second not in ancestors(first)
    assert ancestors(first)[0] is logging.getLogger("kenornir.node")


def test_node_logger_names_stay_readable() -> None:
    assert node_logger("edge-1").name == "kenornir.node.edge-1"
    assert node_logger("edge.1").name == "kenornir.node.edge%2E1"
    assert node_logger("edge%2E1").name == "kenornir.node.edge%252E1"


DOTTED = ("edge", "edge.1", "edge.1.a")


def test_dotted_node_names_each_log_to_their_own_file_with_their_own_secrets(
    tmp_path: Path,
) -> None:
    # All three nodes run at once; each logs its own secret only once every node's log is open.
    both_open = threading.Barrier(len(DOTTED))
    all_logged = threading.Barrier(len(DOTTED))

    def say(task: Task) -> Result:
        both_open.wait(timeout=30)
        node_logger(task.host.name).info("secret of %s: %s", task.host.name, secret_of(task.host))
        all_logged.wait(timeout=30)
        return Result(host=task.host)

    def secret_of(host: Host) -> str:
        return f"secret-of-{host.name}-42"

    hosts = Hosts(
        {
            name: Host(name=name, hostname="127.0.0.1", data={"secrets": [f"secret-of-{name}-42"]})
            for name in DOTTED
        }
    )
    inventory = Inventory(hosts=hosts, groups=Groups(), defaults=Defaults())
    recorder = RunRecorder(tmp_path, Terminal(None, []))
    nornir = Nornir(inventory=inventory, runner=ThreadedRunner(num_workers=len(DOTTED)))
    restore = route_library_logs(tmp_path / "run.log", [])
    try:
        nornir.with_processors([recorder]).run(task=say)
    finally:
        restore()

    for name in DOTTED:
        log = (tmp_path / f"{name}.log").read_text()
        assert f"secret of {name}: ***" in log
        others = [other for other in DOTTED if other != name]
        assert not [other for other in others if f"node {other} " in log], log
        assert "secret-of-" not in log, log


# --- a full lab run ---------------------------------------------------------------------------

SHORTHAND_TOKEN = "shorthand-tok-5150"
SPACED_TOKEN = "spaced-tok-6262"
NAMED_SECRET = "named-secret-8080"  # under a cmdTplArgs key named like a secret
NOTE = 'env"note\\with-\u00e4-9'  # from ${KENORNIR_TEST_NOTE}, under a key not named secret
PASSPHRASE = 'ph"ra\\se-\u00f6-1'  # from ${KENORNIR_TEST_PASSPHRASE}
LAB_URL_PASSWORD = "lab%2Fmirror-pass-2718"  # decoded: lab/mirror-pass-2718


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_a_lab_run_shows_no_secret_of_any_kind(
    fault_lab: FaultLab,
    lab_packages: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every kind at once, each where it can show: the lab password, a passphrase, `--token=`,
    `--token X`, `-t X`, URL credentials, `${NAME}` values, secret-named cmdTplArgs; a dotted
    node name beside its parent name."""
    monkeypatch.setenv("KENORNIR_TEST_NOTE", NOTE)
    monkeypatch.setenv("KENORNIR_TEST_PASSPHRASE", PASSPHRASE)
    fault_lab.secrets += [
        SHORTHAND_TOKEN,
        SPACED_TOKEN,
        NAMED_SECRET,
        NOTE,
        PASSPHRASE,
        LAB_URL_PASSWORD,
        "lab/mirror-pass-2718",
    ]
    # keadm joins, then a postRun hook fails saying the note: the reason quotes it everywhere.
    post_run = fault_lab.workdir / "say-the-note.sh"
    post_run.write_text(f"#!/bin/bash\nprintf 'note: %s\\n' {shlex.quote(NOTE)} >&2\nexit 1\n")
    dotted = fault_lab.entry(
        "node-001",
        cmd="{{.cmd}} -t {{.tk}} --edgenode-name={{nodeName}} --fake-note='{{.note}}' "
        "--fake-sleep=3",
        extra={"nodeName": "edge.1", "postRun": [str(post_run)]},
    )
    # Through sudo that asks for the password: sudo's log and argv are watched too.
    spaced = fault_lab.entry(
        "node-002",
        cmd=f"join --token {SPACED_TOKEN} --edgenode-name=edge --fake-sleep=3",
        auth="password",
        user=fault_lab.lab.sudo_password_user,
        extra={"nodeName": "edge"},
    )
    # The lab key, encrypted with the passphrase.
    key = fault_lab.workdir / "id_encrypted"
    shutil.copy(fault_lab.lab.key_path, key)
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", PASSPHRASE, "-f", key], check=True)
    encrypted = fault_lab.entry(
        "node-003",
        cmd="{{.cmd}} --token={{.token}} --edgenode-name=edge-3 --fake-x={{.joinSecret}} "
        "--fake-sleep=3",
        extra={"nodeName": "edge-3"},
    )
    encrypted["ssh"]["auth"] = {
        "type": "privateKey",
        "privateKeyAuth": {"privateKeyPath": str(key), "passphrase": "${KENORNIR_TEST_PASSPHRASE}"},
    }
    mirror = fault_lab.workdir / "mirror"
    mirror.mkdir()
    shutil.copy(lab_packages["amd64"], mirror)
    with LocalHTTPServer(mirror) as server:
        address = server.url.removeprefix("http://")
        data = batch_config(
            [dotted, spaced, encrypted],
            fault_lab.offline_dir,
            cmd_tpl_args={
                "cmd": "join",
                "tk": SHORTHAND_TOKEN,
                "note": "${KENORNIR_TEST_NOTE}",
                "token": LAB_TOKEN,
                "joinSecret": NAMED_SECRET,
            },
            arch_group=["amd64"],
        )
        data["keadm"]["download"] = {"url": f"http://kenornir:{LAB_URL_PASSWORD}@{address}"}
        del data["keadm"]["offlinePackageDir"]
        config = write_config(fault_lab.workdir, data)

        # No checksum is published: the package is used unverified, with a warning.
        nodes = ["node-001", "node-002", "node-003"]
        run, processes = fault_lab.run_watching_keadm(
            config, "masking", nodes, "--insecure-skip-checksum"
        )

    assert server.requests, "the package was not downloaded"
    assert run.statuses() == {"edge.1": "failed", "edge": "ok", "edge-3": "ok"}, run.stderr
    assert run.record("edge.1")["stage"] == "post-run"
    assert "note: ***" in run.record("edge.1")["reason"]
    # keadm itself got its token through -t.
    argv = fault_lab.lab.join_records("node-001")[-1].argv
    assert argv[argv.index("-t") + 1] == SHORTHAND_TOKEN
    dotted_log, edge_log = run.node_log("edge.1"), run.node_log("edge")
    assert "./keadm join -t *** --edgenode-name=edge.1 --fake-note='***'" in dotted_log
    assert "stderr: note: ***" in dotted_log
    assert "./keadm join --token *** --edgenode-name=edge" in edge_log
    assert "edge.1" not in edge_log
    assert "--token=*** --edgenode-name=edge-3 --fake-x=***" in run.node_log("edge-3")
    # On the nodes: only keadm's own argv holds what keadm is given (as with upstream); no other
    # process and no sudo log line holds any secret.
    assert processes.keys() == set(nodes), "keadm was never seen running"
    seen_on_nodes = {
        f"{node} process {number}": line
        for node, lines in processes.items()
        for number, line in enumerate(lines)
        if "./keadm join" not in line
    }
    seen_on_nodes["node-002 sudo log"] = fault_lab.lab.sudo_log("node-002")
    assert "COMMAND=" in seen_on_nodes["node-002 sudo log"]
    assert leaked_secrets(fault_lab.secrets, seen_on_nodes) == []
