"""Secrets at rest and in outputs: the config-permission warning, and the leak check itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from kenornir.config import exposed_secrets_warning, load_config
from tests.faults.conftest import FaultRun, leaked_secrets

PASSWORD = "fault-suite-password-8086"
TOKEN = "fault.suite.token.6502"
CONFIG = """\
keadm:
  keadmVersion: v1.22.0
  archGroup: [amd64]
  cmdTplArgs: {{cmd: join, token: "{token}"}}
nodes:
  - nodeName: edge-1
    keadmCmd: "{{{{.cmd}}}} --token={{{{.token}}}}"
    ssh:
      ip: 127.0.0.11
      username: root
      auth: {{type: password, passwordAuth: {{password: "{password}"}}}}
"""
FROM_ENVIRONMENT = {"EDGE_PASSWORD": PASSWORD, "EDGE_TOKEN": TOKEN}


def config_file(tmp_path: Path, mode: int, *, from_environment: bool = False) -> Path:
    path = tmp_path / "batch.yaml"
    if from_environment:
        path.write_text(CONFIG.format(password="${EDGE_PASSWORD}", token="${EDGE_TOKEN}"))
    else:
        path.write_text(CONFIG.format(password=PASSWORD, token=TOKEN))
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_config_with_secrets_open_to_others_is_warned_about(tmp_path: Path, mode: int) -> None:
    path = config_file(tmp_path, mode)

    warning = exposed_secrets_warning(path, load_config(path))

    assert warning is not None
    assert str(path) in warning and f"mode {mode:04o}" in warning and "chmod 600" in warning
    assert PASSWORD not in warning and TOKEN not in warning


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_config_is_not_warned_about(tmp_path: Path, mode: int) -> None:
    path = config_file(tmp_path, mode)
    assert exposed_secrets_warning(path, load_config(path)) is None


def test_secrets_from_the_environment_are_not_in_the_file(tmp_path: Path) -> None:
    path = config_file(tmp_path, 0o644, from_environment=True)
    config = load_config(path, env=FROM_ENVIRONMENT)
    assert PASSWORD in config.secrets
    assert exposed_secrets_warning(path, config) is None


def test_leak_check_finds_a_secret_in_any_output_without_repeating_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "node-001.log").write_text(f"running: ./keadm join --token={TOKEN}\n")
    (run_dir / "report.json").write_text('{"nodes": []}\n')
    run = FaultRun(exit_code=1, stdout="", stderr=f"password {PASSWORD} refused", run_dir=run_dir)

    leaks = leaked_secrets([PASSWORD, TOKEN, "never-printed"], run.outputs())

    assert [leak.split(":")[0] for leak in leaks] == [
        "secret #1 in stderr",
        "secret #2 in node-001.log",
    ]
    assert all(PASSWORD not in leak and TOKEN not in leak for leak in leaks)
    assert (
        leaked_secrets([PASSWORD, TOKEN], FaultRun(0, "", "", tmp_path / "empty").outputs()) == []
    )
