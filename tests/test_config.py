"""Loader and model of the batch config: defaults, types, secrets, paths and the error type."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kenornir.config import (
    DEFAULT_DOWNLOAD_BASE,
    SAMPLE_CONFIG,
    BatchConfig,
    ConfigError,
    load_config,
    parse_config,
)
from kenornir.config.fields import SECTIONS

BASE: dict[str, Any] = {
    "keadm": {"keadmVersion": "v1.20.0", "archGroup": ["amd64"]},
    "nodes": [
        {
            "nodeName": "edge-1",
            "keadmCmd": "join --cloudcore-ipport=10.0.0.1:10000",
            "ssh": {
                "ip": "10.0.0.11",
                "username": "root",
                "auth": {"type": "password", "passwordAuth": {"password": "pw-1"}},
            },
        }
    ],
}


def config_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes: config_with(**{"keadm.download": {...}})."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        target[last] = value
    return data


def parse(data: dict[str, Any], env: dict[str, str] | None = None) -> BatchConfig:
    return parse_config(yaml.safe_dump(data, sort_keys=False), source="t.yaml", env=env or {})


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, source="t.yaml", env=env or {})
    return raised.value.errors


class TestDefaults:
    def test_upstream_defaults(self) -> None:
        config = parse(BASE)
        assert config.max_run_num == 5
        assert config.nodes[0].ssh.port == 22
        assert config.keadm.download.enable is True
        assert config.keadm.download.verify_checksum is True
        assert config.keadm.download.url == f"{DEFAULT_DOWNLOAD_BASE}/v1.20.0"

    def test_max_run_num_zero_means_five_and_others_are_kept(self) -> None:
        assert parse(config_with(maxRunNum=0)).max_run_num == 5
        assert parse(config_with(maxRunNum=12)).max_run_num == 12

    def test_default_package_url_is_the_github_release_of_the_version(self) -> None:
        keadm = parse(BASE).keadm
        assert keadm.package_url("arm64") == (
            "https://github.com/kubeedge/kubeedge/releases/download/v1.20.0/"
            "keadm-v1.20.0-linux-arm64.tar.gz"
        )

    def test_explicit_url_is_used_without_the_version_appended(self) -> None:
        keadm = parse(config_with(**{"keadm.download": {"url": "http://127.0.0.1:8080/m/"}})).keadm
        assert keadm.download.url == "http://127.0.0.1:8080/m"
        assert keadm.package_url("arm") == "http://127.0.0.1:8080/m/keadm-v1.20.0-linux-arm.tar.gz"

    def test_verify_checksum_can_be_turned_off(self) -> None:
        keadm = parse(config_with(**{"keadm.download": {"verifyChecksum": False}})).keadm
        assert keadm.download.verify_checksum is False

    def test_offline_package_path_follows_upstream_layout(self, tmp_path: Path) -> None:
        data = config_with(
            **{"keadm.download": {"enable": False}, "keadm.offlinePackageDir": str(tmp_path)}
        )
        keadm = parse(data).keadm
        assert keadm.offline_package_path("amd64") == (
            tmp_path / "amd64" / "keadm-v1.20.0-linux-amd64.tar.gz"
        )

    def test_missing_auth_block_means_ssh_agent(self) -> None:
        data = config_with(**{"nodes.0.ssh": {"ip": "10.0.0.11", "username": "edge", "sudo": True}})
        ssh = parse(data).nodes[0].ssh
        assert ssh.auth.kind == "agent"
        assert ssh.sudo is True
        assert ssh.auth.password is None


class TestTextValues:
    @pytest.mark.parametrize(
        ("written", "version"),
        [
            ("v1.20.0", "v1.20.0"),
            ("1.20.0", "v1.20.0"),
            ("1.20", "v1.20"),
            ("v1.19.0-rc.1", "v1.19.0-rc.1"),
        ],
    )
    def test_keadm_version_keeps_its_text_and_gets_a_v(self, written: str, version: str) -> None:
        text = yaml.safe_dump(BASE, sort_keys=False).replace("v1.20.0", written)
        assert "'" not in text.split("nodes:")[0]  # unquoted, as users write it
        assert parse_config(text, env={}).keadm.keadm_version == version

    def test_numbers_are_text_where_upstream_reads_them_as_text(self) -> None:
        text = yaml.safe_dump(BASE, sort_keys=False).replace("password: pw-1", "password: 0123")
        assert parse_config(text, env={}).nodes[0].ssh.auth.password == "0123"

    def test_empty_strings_mean_unset(self) -> None:
        data = config_with(
            **{"keadm.download": {"url": ""}, "keadm.offlinePackageDir": "", "nodes.0.copyFrom": ""}
        )
        config = parse(data)
        assert config.keadm.download.url == f"{DEFAULT_DOWNLOAD_BASE}/v1.20.0"
        assert config.keadm.offline_package_dir is None
        assert config.nodes[0].copy_from is None

    def test_merge_keys_share_a_block(self) -> None:
        text = (
            "keadm: {keadmVersion: v1.20.0, archGroup: [amd64]}\n"
            "nodes:\n"
            "  - nodeName: a\n"
            "    keadmCmd: join\n"
            "    ssh: &login {ip: 10.0.0.1, username: root, port: 2200}\n"
            "  - nodeName: b\n"
            "    keadmCmd: join\n"
            "    ssh: {<<: *login, ip: 10.0.0.2}\n"
            "  - nodeName: c\n"
            "    keadmCmd: join\n"
            "    ssh: {<<: *login, ip: 10.0.0.3, port: 2201}\n"
        )
        nodes = parse_config(text, env={}).nodes
        assert [(n.ssh.ip, n.ssh.port, n.ssh.username) for n in nodes] == [
            ("10.0.0.1", 2200, "root"),
            ("10.0.0.2", 2200, "root"),
            ("10.0.0.3", 2201, "root"),
        ]

    def test_a_merge_of_something_else_than_a_mapping_is_an_error(self) -> None:
        text = yaml.safe_dump(BASE, sort_keys=False) + "maxRunNum: 2\n"
        text = text.replace("keadm:\n", "keadm:\n  <<: [1, 2]\n", 1)
        assert errors_of(text) == [
            "t.yaml: keadm: has a `<<` merge key that is not a mapping (fix or expand it)",
        ]


class TestSecretsFromEnvironment:
    def test_password_passphrase_and_template_args_read_the_environment(
        self, tmp_path: Path
    ) -> None:
        key = tmp_path / "id_edge"
        key.write_text("key")
        data = config_with(
            **{
                "keadm.cmdTplArgs": {"token": "${TOKEN}", "cmd": "join-${SUFFIX}"},
                "nodes.0.keadmCmd": "{{.cmd}} --token={{.token}}",
                "nodes.0.ssh.auth": {
                    "type": "privateKey",
                    "privateKeyAuth": {"privateKeyPath": str(key), "passphrase": "${PHRASE}"},
                },
            }
        )
        env = {"TOKEN": "tok-123", "SUFFIX": "x", "PHRASE": "open sesame"}
        node = parse(data, env=env).nodes[0]
        assert node.keadm_cmd == "join-x --token=tok-123"
        assert node.ssh.auth.passphrase == "open sesame"
        assert node.ssh.auth.private_key_path == str(key)
        # A value kept in the environment is a secret, whatever its key (SUFFIX's too).
        assert set(node.secrets) == {"tok-123", "open sesame", "x"}

    def test_load_config_reads_the_process_environment_by_default(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "c.yaml"
        path.write_text(
            yaml.safe_dump(config_with(**{"nodes.0.ssh.auth.passwordAuth.password": "${PW}"}))
        )
        monkeypatch.setenv("PW", "from-env")
        assert load_config(path).nodes[0].ssh.auth.password == "from-env"
        monkeypatch.delenv("PW")
        with pytest.raises(ConfigError, match="environment variable PW is not set"):
            load_config(path)

    def test_config_secrets_collect_every_node(self) -> None:
        second = copy.deepcopy(BASE["nodes"][0])
        second["nodeName"] = "edge-2"
        second["ssh"]["auth"]["passwordAuth"]["password"] = "pw-2"
        second["keadmCmd"] = "join --token inline-token"
        config = parse(config_with(nodes=[BASE["nodes"][0], second]))
        assert set(config.secrets) == {"pw-1", "pw-2", "inline-token"}
        assert config.nodes[1].keadm_cmd_masked == "join --token ***"


class TestLocalPaths:
    def test_relative_paths_resolve_against_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "conf").mkdir()
        (tmp_path / "files").mkdir()
        path = tmp_path / "conf" / "c.yaml"
        path.write_text(yaml.safe_dump(config_with(**{"nodes.0.copyFrom": "files"})))
        monkeypatch.chdir(tmp_path)
        assert load_config(path).nodes[0].copy_from == str(tmp_path / "files")

    def test_a_path_found_only_beside_the_config_gets_a_hint(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "conf" / "files").mkdir(parents=True)
        (tmp_path / "conf" / "c.yaml").write_text(
            yaml.safe_dump(config_with(**{"nodes.0.copyFrom": "files"}))
        )
        monkeypatch.chdir(tmp_path)
        with pytest.raises(ConfigError) as raised:
            load_config("conf/c.yaml")
        assert raised.value.errors == [
            "conf/c.yaml: nodes[0].copyFrom: 'files' does not exist (relative paths start from "
            "the current directory, as in keadm batch; it exists relative to the config file: "
            "run from there or write 'conf/files')"
        ]

    def test_tilde_is_expanded(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "hooks").mkdir()
        (tmp_path / "hooks" / "pre.sh").write_text("true\n")
        monkeypatch.setenv("HOME", str(tmp_path))
        node = parse(config_with(**{"nodes.0.preRun": "~/hooks/pre.sh"})).nodes[0]
        assert node.pre_run == (str(tmp_path / "hooks" / "pre.sh"),)

    def test_hooks_run_global_ones_first(self, tmp_path: Path) -> None:
        for name in ("global.sh", "own.sh"):
            (tmp_path / name).write_text("true\n")
        data = config_with(
            **{
                "keadm.postRun": [str(tmp_path / "global.sh")],
                "nodes.0.postRun": [str(tmp_path / "own.sh")],
            }
        )
        node = parse(data).nodes[0]
        assert node.post_run == (str(tmp_path / "global.sh"), str(tmp_path / "own.sh"))
        assert node.pre_run == ()


class TestKeadmBinDir:
    def test_no_version_needed_when_every_node_has_keadm(self) -> None:
        data = config_with(**{"keadm": {"keadmBinDir": "/usr/local/bin"}})
        config = parse(data)
        assert config.needs_packages is False
        assert config.keadm.keadm_version is None
        assert config.keadm.download.url is None
        assert config.nodes[0].work_dir == "/usr/local/bin"

    def test_the_node_value_wins_over_the_global_one(self) -> None:
        data = config_with(**{"keadm.keadmBinDir": "/usr/local/bin", "nodes.0.keadmBinDir": "/opt"})
        assert parse(data).nodes[0].keadm_bin_dir == "/opt"


class TestErrors:
    def test_config_error_carries_every_error_one_per_line(self) -> None:
        errors = errors_of("maxRunNum: -3\nnodes: 5\nextra: 1\n")
        assert errors == [
            "t.yaml: extra: unknown key (expected one of: keadm, nodes, maxRunNum, transfer)",
            "t.yaml: nodes: must be a list of nodes, got a number (start each with '- ')",
            "t.yaml: maxRunNum: -3 is below 0 (0 or unset means 5)",
        ]
        assert str(ConfigError(errors)) == "\n".join(errors)
        assert all("\n" not in error for error in errors)

    def test_yaml_syntax_errors_point_at_line_and_column(self) -> None:
        assert errors_of("keadm: {keadmVersion: v1\nnodes: []\n") == [
            "t.yaml: line 2, column 6: YAML syntax error: expected ',' or '}', but got ':' "
            "(check the indentation and quoting there)"
        ]

    def test_deep_nesting_is_an_error_not_a_crash(self) -> None:
        (error,) = errors_of("nodes: " + "[" * 5000 + "]" * 5000 + "\n")
        assert error.startswith("t.yaml: ")

    def test_missing_unreadable_and_non_utf8_files(self, tmp_path: Path) -> None:
        (tmp_path / "latin1.yaml").write_bytes(b"nodes: [caf\xe9]\n")
        for path, message in [
            (tmp_path / "nope.yaml", "file not found (check the path)"),
            (tmp_path, "is a directory (give the config file)"),
            (tmp_path / "latin1.yaml", "is not UTF-8 text (save it as UTF-8)"),
        ]:
            with pytest.raises(ConfigError) as raised:
                load_config(path)
            assert raised.value.errors == [f"{path}: {message}"]

    def test_the_model_is_immutable(self) -> None:
        config = parse(BASE)
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.nodes[0].name = "other"  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.keadm.download.enable = False  # type: ignore[misc]

    def test_the_model_is_hashable_and_compares_by_value(self) -> None:
        data = config_with(**{"nodes.0.labels": {"site": "north"}, "keadm.cmdTplArgs": {"a": "b"}})
        first, second = parse(data), parse(data)
        assert first == second
        assert hash(first) == hash(second)
        assert {first.nodes[0], second.nodes[0]} == {first.nodes[0]}

    def test_secret_values_never_appear_in_errors(self) -> None:
        data = config_with(
            **{
                "keadm.cmdTplArgs": {"token": "tok-very-secret"},
                "nodes.0.keadmCmd": "join --token={{ .token }} {{ oops(",
                "nodes.0.ssh.auth.passwordAuth.password": "pw-very-secret",
                "nodes.0.ssh.port": "22",
            }
        )
        errors = errors_of(yaml.safe_dump(data))
        assert len(errors) == 2
        assert not [e for e in errors if "very-secret" in e]


def test_transfer_is_auto_unless_the_config_says_stream_or_sftp() -> None:
    assert parse(BASE).transfer == "auto"
    assert parse(config_with(transfer="sftp")).transfer == "sftp"
    errors = errors_of(yaml.safe_dump(config_with(transfer="sfpt")))
    assert any(
        "'sfpt' is not one of auto, stream, sftp (did you mean 'sftp'?)" in e for e in errors
    )


def test_every_key_the_reader_knows_is_shown_in_the_gen_config_sample() -> None:
    # The field table is the one list of keys; a key added there must be documented too.
    shown = set(re.findall(r"([A-Za-z]+):", SAMPLE_CONFIG))
    known = {field.key for fields in SECTIONS.values() for field in fields}
    assert known - shown == set()


def test_a_jump_host_written_as_an_object_is_read_and_checked_like_ssh() -> None:
    auth = {"type": "password", "passwordAuth": {"password": "jump-pw"}}
    jump = {"ip": "10.0.0.9", "username": "ops", "auth": auth}
    config = parse(config_with(**{"nodes.0.ssh.proxyJump": [jump]}))
    assert config.nodes[0].ssh.proxy_jump[0].address == "10.0.0.9:22"
    assert "jump-pw" in config.nodes[0].secrets
    wrong = {"ip": "300.1.1.1", "usename": "ops", "port": 70000}
    errors = errors_of(yaml.safe_dump(config_with(**{"nodes.0.ssh.proxyJump": [wrong]})))
    at = "t.yaml: nodes[0].ssh.proxyJump[0]"
    assert errors == [
        f"{at}.usename: unknown key (did you mean 'username'?)",
        f"{at}.username: is required (set it to the login user on the jump host)",
        f"{at}.ip: '300.1.1.1' is not an IP address or host name "
        "(write e.g. 192.168.1.10 or edge-1.lan)",
        f"{at}.port: 70000 is not a port number (use 1 to 65535)",
    ]
