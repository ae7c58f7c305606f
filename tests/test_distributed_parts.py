"""The pieces of a --broker run that need no broker: what a node's config looks like on its way
to a worker, the broker URL, TLS settings, sites, queues, and the records that name workers."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from kenornir.config import ConfigError, load_config, parse_config
from kenornir.config.portable import WorkerEnvironment, node_texts, travelling_secret_fields
from kenornir.distributed.broker import celery_app, queue_for
from kenornir.distributed.url import BrokerError, resolved_url
from kenornir.distributed.worker import WorkerSettings
from kenornir.outcome import NodeOutcome, Stage, Status
from kenornir.report import summary_table

CONFIG = """\
keadm:
  keadmVersion: v1.20.0
  archGroup: [amd64]
  cmdTplArgs:
    token: ${JOIN_TOKEN}
nodes:
  - nodeName: edge-1
    keadmCmd: join --token={{.token}}
    site: north
    ssh: &login
      ip: 127.0.0.1
      username: root
      auth: {type: password, passwordAuth: {password: written-in-the-file}}
  - nodeName: edge-2
    keadmCmd: join --token={{.token}}
    ssh: {<<: *login, ip: 127.0.0.2}
"""
TOKEN = "token-from-the-environment-1234"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(CONFIG)
    return path


def test_each_node_travels_alone_with_its_environment_secrets_unresolved(
    config_file: Path,
) -> None:
    config = load_config(config_file, {"JOIN_TOKEN": TOKEN})
    texts = node_texts(config_file, config)
    assert set(texts) == {"edge-1", "edge-2"}
    for name, text in texts.items():
        assert "${JOIN_TOKEN}" in text and TOKEN not in text
        worker_view = parse_config(text, env={"JOIN_TOKEN": "the-workers-own-token"})
        (node,) = worker_view.nodes
        assert node.name == name
        assert node.keadm_cmd == "join --token=the-workers-own-token"
    # The anchor edge-2 merges in travels with edge-2 although edge-1 holds it.
    second = parse_config(texts["edge-2"], env={"JOIN_TOKEN": "x"}).nodes[0]
    assert (second.ssh.ip, second.ssh.username, second.site) == ("127.0.0.2", "root", None)
    assert parse_config(texts["edge-1"], env={"JOIN_TOKEN": "x"}).nodes[0].site == "north"


def test_secrets_written_in_the_file_are_named_by_field(config_file: Path) -> None:
    config = load_config(config_file, {"JOIN_TOKEN": TOKEN})
    fields = travelling_secret_fields(CONFIG, config.secrets)
    assert fields == ["nodes[0].ssh.auth.passwordAuth.password"]


def test_the_controller_may_lack_a_secret_the_workers_resolve(config_file: Path) -> None:
    environment = WorkerEnvironment({})
    config = load_config(config_file, environment)
    assert environment.left_to_workers == {"JOIN_TOKEN"}
    assert config.nodes[0].keadm_cmd == "join --token=${JOIN_TOKEN}"
    with pytest.raises(ConfigError, match="JOIN_TOKEN is not set"):
        load_config(config_file, {})  # a local run still needs it


def test_a_site_names_a_queue_so_only_safe_names_pass() -> None:
    bad = CONFIG.replace("site: north", "site: North.1")
    with pytest.raises(ConfigError) as raised:
        parse_config(bad, source="b.yaml", env={"JOIN_TOKEN": TOKEN})
    assert raised.value.errors == [
        "b.yaml: nodes[0].site: 'North.1' is not a site name (use lowercase letters, digits, "
        "'_' and '-', starting with a letter or digit, at most 63)"
    ]
    assert queue_for("north") == "kenornir.site.north" and queue_for(None) == "kenornir"


def test_a_worker_takes_its_sites_queues_or_else_the_common_one() -> None:
    assert WorkerSettings("redis://x", sites=()).queues == ["kenornir"]
    assert WorkerSettings("redis://x", sites=("north", "south")).queues == [
        "kenornir.site.north",
        "kenornir.site.south",
    ]


def test_the_broker_url_reads_names_from_the_environment_and_never_shows_its_password() -> None:
    url = resolved_url("redis://:${PW}@127.0.0.1:6379/0", {"PW": "hunter2-secret"})
    assert url == "redis://:hunter2-secret@127.0.0.1:6379/0"
    with pytest.raises(BrokerError, match="environment variable PW is not set"):
        resolved_url("redis://:${PW}@127.0.0.1/0", {})
    with pytest.raises(BrokerError) as raised:
        resolved_url("http://:hunter2-secret@127.0.0.1/0", {})
    assert "hunter2-secret" not in str(raised.value)
    assert "http://:***@127.0.0.1/0: not a Redis URL" in str(raised.value)


def test_rediss_takes_its_tls_settings_from_the_url() -> None:
    app = celery_app("rediss://:pw@127.0.0.1:6380/0?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem")
    assert app.conf.broker_url == "rediss://:pw@127.0.0.1:6380/0"
    assert app.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_ca_certs": "/ca.pem"}
    assert app.conf.redis_backend_use_ssl == app.conf.broker_use_ssl
    default = celery_app("rediss://127.0.0.1:6380/0")
    assert default.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    with pytest.raises(BrokerError, match="ssl_cert_reqs=maybe"):
        celery_app("rediss://127.0.0.1/0?ssl_cert_reqs=maybe")
    with pytest.raises(BrokerError, match="TLS parameters need rediss://"):
        celery_app("redis://127.0.0.1/0?ssl_ca_certs=/ca.pem")


def test_records_name_their_worker_and_the_summary_shows_it(tmp_path: Path) -> None:
    outcome = NodeOutcome(
        "edge-1", "127.0.0.1:22", "amd64", Status.FAILED, Stage.PRE_RUN, "worker w1 lost", None
    )
    outcome.worker = "w1"
    assert NodeOutcome.from_record(outcome.to_record()) == outcome
    table = summary_table([outcome], tmp_path)
    header, row = table.splitlines()[:2]
    assert header.split() == [
        *("NODE", "ADDRESS", "ARCH", "STATUS", "STAGE", "TIME", "WORKER", "REASON")
    ]
    assert row.split()[6] == "w1"
    local = NodeOutcome("edge-2", "127.0.0.2:22", status=Status.OK)
    assert "WORKER" not in summary_table([local], tmp_path)


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        ([], 2, "give --broker URL (or set KENORNIR_BROKER)"),
        (["--broker", "http://127.0.0.1/0"], 2, "not a Redis URL"),
        (["--broker", "redis://:${NO_SUCH_VAR}@127.0.0.1/0"], 2, "NO_SUCH_VAR is not set"),
        (["--broker", "redis://127.0.0.1/0", "--site", "North"], 2, "not a site name"),
        (["--broker", "redis://127.0.0.1/0", "--cache-dir", "{open}"], 3, "writable by group"),
    ],
)
def test_a_worker_refuses_bad_input_in_one_line_before_it_starts(
    tmp_path: Path, arguments: list[str], code: int, message: str
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if k not in ("KENORNIR_BROKER", "NO_SUCH_VAR")}
    argv = [arg.replace("{open}", str(shared)) for arg in arguments]
    done = subprocess.run(
        [sys.executable, "-m", "kenornir", "worker", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == code, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("kenornir: error: ") and message in line
