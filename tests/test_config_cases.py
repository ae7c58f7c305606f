"""Data-driven config cases: invalid YAML with its exact errors, valid YAML with its commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from kenornir.config import BatchConfig, ConfigError, load_config

CASES = Path(__file__).parent / "data" / "configs"
INVALID = sorted((CASES / "invalid").glob("*.yaml"))
VALID = sorted((CASES / "valid").glob("*.yaml"))
# The cases read secrets from these; any other variable they name is unset on purpose.
ENV = {"KENORNIR_TEST_PASSWORD": "s3cret-pw", "KENORNIR_TEST_TOKEN": "env.token.value"}


def commands_text(config: BatchConfig) -> str:
    lines = []
    for node in config.nodes:
        lines += [
            node.name,
            f"  command: {node.keadm_cmd}",
            f"  masked:  {node.keadm_cmd_masked}",
            f"  remote:  {node.remote_command_masked}",
        ]
    return "\n".join(lines) + "\n"


def test_there_are_enough_cases() -> None:
    assert len(INVALID) >= 30
    assert len(VALID) >= 5


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.stem)
def test_invalid_config_reports_exactly_its_errors(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Upstream resolves relative paths against the working directory: run from the case's dir.
    monkeypatch.chdir(case.parent)
    with pytest.raises(ConfigError) as raised:
        load_config(case.name, env=ENV)
    expected = case.with_suffix(".errors").read_text().splitlines()
    assert raised.value.errors == expected
    assert str(raised.value) == "\n".join(expected)


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.stem)
def test_valid_config_renders_the_expected_commands(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(case.parent)
    config = load_config(case.name, env=ENV)
    assert commands_text(config) == case.with_suffix(".commands").read_text()
    for node in config.nodes:
        for secret in node.secrets:
            assert secret not in node.remote_command_masked
