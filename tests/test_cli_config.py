"""The CLI's config commands: gen-config, validate and plan, their exit codes and their output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kenornir import __version__
from kenornir.cli import main
from kenornir.config import SAMPLE_CONFIG

REPO = Path(__file__).resolve().parent.parent
# What the user must fill in the sample, and a value for each.
PLACEHOLDERS = {
    "<KEADM-VERSION>": ("keadm.keadmVersion", "v1.20.0"),
    "<CLOUDCORE-IP:PORT>": ("keadm.cmdTplArgs.cloudcore", "127.0.0.1:10000"),
    "<TOKEN>": ("keadm.cmdTplArgs.token", "sample-token-value"),
    "<EDGE-NODE-IP>": ("nodes[0].ssh.ip", "127.0.0.9"),
    "<PASSWORD>": ("nodes[0].ssh.auth.passwordAuth.password", "sample-password"),
}
PASSWORD, PASSPHRASE, TOKEN, INLINE_TOKEN = "pw-Zq81", "phrase-Kx02", "tok-Vb77", "inline-Tt55"

SECRET_CONFIG = f"""\
keadm:
  keadmVersion: v1.20.0
  archGroup: [amd64, arm]
  cmdTplArgs: {{cmd: join, token: "${{CLI_TEST_TOKEN}}"}}
  postRun: hooks/verify.sh
nodes:
  - nodeName: edge-1
    keadmCmd: "{{{{.cmd}}}} --token={{{{.token}}}} --pre-run=./setup.sh"
    copyFrom: files
    ssh:
      ip: 127.0.0.11
      username: root
      auth: {{type: password, passwordAuth: {{password: {PASSWORD}}}}}
  - nodeName: edge-2
    keadmCmd: reset edge --token {INLINE_TOKEN}
    keadmBinDir: /usr/local/bin
    ssh:
      ip: 127.0.0.12
      port: 2222
      username: edge
      sudo: true
      auth:
        type: privateKey
        privateKeyAuth: {{privateKeyPath: id_edge, passphrase: {PASSPHRASE}}}
maxRunNum: 3
"""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def secret_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "setup.sh").write_text("echo setup\n")
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "verify.sh").write_text("systemctl is-active edgecore\n")
    (tmp_path / "id_edge").write_text("key\n")
    path = tmp_path / "batch.yaml"
    path.write_text(SECRET_CONFIG)
    path.chmod(0o600)  # spelled-out secrets in a 0644 file would add kenornir's warning line
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLI_TEST_TOKEN", TOKEN)
    return path


class TestGenConfig:
    def test_prints_the_sample(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert run_cli(capsys, "gen-config") == (0, SAMPLE_CONFIG, "")

    def test_writes_a_file_and_never_overwrites(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        target = tmp_path / "c.yaml"
        code, out, _ = run_cli(capsys, "gen-config", "-o", str(target))
        assert code == 0
        assert f"wrote {target}" in out
        assert target.read_text() == SAMPLE_CONFIG
        target.write_text("mine\n")
        code, _, err = run_cli(capsys, "gen-config", "--output", str(target))
        assert code == 2
        assert err == f"kenornir: error: {target} exists (remove it, or pick a name)\n"
        assert target.read_text() == "mine\n"

    def test_the_sample_fails_only_on_what_the_user_must_fill(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        run_cli(capsys, "gen-config", "-o", "c.yaml")
        assert Path("c.yaml").stat().st_mode & 0o777 == 0o600  # it will hold secrets
        code, out, err = run_cli(capsys, "validate", "c.yaml")
        assert (code, out) == (2, "")
        errors = err.splitlines()
        assert len(errors) == len(PLACEHOLDERS)
        for error, (placeholder, (path, _)) in zip(errors, PLACEHOLDERS.items(), strict=True):
            assert error.startswith(f"c.yaml: {path}: '{placeholder}' is a placeholder (replace it")

        filled = SAMPLE_CONFIG
        for placeholder, (_, value) in PLACEHOLDERS.items():
            filled = filled.replace(placeholder, value)
        Path("c.yaml").write_text(filled)
        code, out, err = run_cli(capsys, "validate", "c.yaml")
        assert (code, err) == (0, "")
        assert out.startswith("c.yaml: valid\n")


class TestValidate:
    def test_summary(self, secret_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run_cli(capsys, "validate", "batch.yaml")
        assert (code, err) == (0, "")
        assert out == (
            "batch.yaml: valid\n"
            "  nodes:    2\n"
            "  keadm:    v1.20.0, prepared for amd64, arm\n"
            "  from:     https://github.com/kubeedge/kubeedge/releases/download/v1.20.0/"
            "keadm-v1.20.0-linux-<arch>.tar.gz (sha512 checked)\n"
            "  own keadm: 1 node (keadmBinDir), nothing uploaded there\n"
            "  auth:     password 1, privateKey 1; sudo on 1 node\n"
            "  hooks:    postRun on 2 nodes\n"
            "  workers:  3 nodes at a time (maxRunNum)\n"
        )

    def test_keadm_spelling_of_the_config_option(
        self, secret_config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run_cli(capsys, "validate", "-c", "batch.yaml")[0] == 0
        assert run_cli(capsys, "validate", "--config", "batch.yaml")[0] == 0

    def test_every_error_on_stderr_and_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        Path("bad.yaml").write_text("maxRunNum: x\nnodes: []\n")
        assert run_cli(capsys, "validate", "bad.yaml") == (
            2,
            "",
            "bad.yaml: maxRunNum: must be a whole number, got text\n"
            "bad.yaml: nodes: is empty (list at least one node)\n",
        )

    @pytest.mark.parametrize(
        "argv",
        [
            ["validate"],
            ["validate", "a.yaml", "-c", "b.yaml"],
            ["plan"],
            [],
            ["validate", "--no-such-option", "a.yaml"],
        ],
    )
    def test_usage_errors_exit_2(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run_cli(capsys, *argv)
        assert (code, out) == (2, "")
        assert "error:" in err
        assert "Traceback" not in err

    def test_an_unknown_word_is_taken_as_the_config_of_a_run(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # `kenornir CONFIG` runs the batch, so a word that is no command names a config file.
        assert run_cli(capsys, "frobnicate") == (
            2,
            "",
            "frobnicate: file not found (check the path)\n",
        )

    def test_a_missing_file_is_a_config_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        missing = tmp_path / "nope.yaml"
        assert run_cli(capsys, "validate", str(missing)) == (
            2,
            "",
            f"{missing}: file not found (check the path)\n",
        )

    def test_the_example_inventory_validates(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(REPO)
        monkeypatch.delenv("KENORNIR_EXAMPLE_PASSWORD", raising=False)
        monkeypatch.delenv("KENORNIR_EXAMPLE_TOKEN", raising=False)
        code, _, err = run_cli(capsys, "validate", "inventory/example.yaml")
        assert code == 2
        assert "KENORNIR_EXAMPLE_PASSWORD is not set" in err
        assert "KENORNIR_EXAMPLE_TOKEN is not set" in err
        monkeypatch.setenv("KENORNIR_EXAMPLE_PASSWORD", "example-pw")
        monkeypatch.setenv("KENORNIR_EXAMPLE_TOKEN", "example-token")
        code, out, err = run_cli(capsys, "validate", "inventory/example.yaml")
        assert (code, err) == (0, "")
        assert "  nodes:    2\n" in out


class TestPlan:
    def test_plan_shows_uploads_and_exact_command_lines(
        self, secret_config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        base = secret_config.parent
        code, out, err = run_cli(capsys, "plan", "-c", "batch.yaml")
        assert (code, err) == (0, "")
        nodes = out.split("\n\n", 1)[1]
        assert nodes == (
            "edge-1  127.0.0.11:22  user root, password auth\n"
            "  uploads to /tmp/kubeedge/keadm:\n"
            "    keadm (<arch> from package, detected at run time)\n"
            f"    setup.sh  11 bytes  (copyFrom {base / 'files'})\n"
            f"    verify.sh  29 bytes  (postRun {base / 'hooks' / 'verify.sh'})\n"
            "  runs:\n"
            "    keadm     cd /tmp/kubeedge/keadm && "
            "./keadm join --token=*** --pre-run=./setup.sh\n"
            "    post-run  cd /tmp/kubeedge/keadm && /bin/bash ./verify.sh\n"
            "  checked on the node by root, in the shell that runs them, right before they run:\n"
            "    /tmp/kubeedge and /tmp/kubeedge/keadm: directories owned by root, writable by "
            "no one else\n"
            "    keadm, every copyFrom file, each hook script: the sha256 kenornir uploaded\n"
            "\n"
            "edge-2  127.0.0.12:2222  user edge, privateKey auth\n"
            "  uploads to /tmp/kubeedge/keadm:\n"
            f"    verify.sh  29 bytes  (postRun {base / 'hooks' / 'verify.sh'})\n"
            "  runs (through sudo):\n"
            "    keadm     cd /usr/local/bin && yes | ./keadm reset edge --token ***\n"
            "    post-run  cd /tmp/kubeedge/keadm && /bin/bash ./verify.sh\n"
            "  checked on the node by root (through sudo), in the shell that runs them, right "
            "before they run:\n"
            "    /tmp/kubeedge and /tmp/kubeedge/keadm: directories owned by root, writable by "
            "no one else\n"
            "    each hook script: the sha256 kenornir uploaded\n"
        )

    def test_a_node_with_nothing_to_upload(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        Path("c.yaml").write_text(
            "keadm: {keadmBinDir: /opt/kubeedge}\n"
            "nodes: [{nodeName: n1, keadmCmd: version, ssh: {ip: 127.0.0.5, username: root}}]\n"
        )
        code, out, _ = run_cli(capsys, "plan", "c.yaml")
        assert code == 0
        assert out == (
            "c.yaml: plan (no node is contacted)\n"
            "  nodes:    1\n"
            "  keadm:    already on every node (keadmBinDir): nothing to prepare\n"
            "  auth:     ssh-agent 1\n"
            "  workers:  5 nodes at a time (maxRunNum)\n"
            "\n"
            "n1  127.0.0.5:22  user root, ssh-agent\n"
            "  uploads: nothing\n"
            "  runs:\n"
            "    keadm     cd /opt/kubeedge && ./keadm version\n"
        )


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_no_secret_is_ever_printed(
    command: str, secret_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, command, "batch.yaml")
    assert code == 0
    secret_config.write_text(SECRET_CONFIG.replace("maxRunNum: 3", "maxRunNum: -3"))
    code, bad_out, bad_err = run_cli(capsys, command, "batch.yaml")
    assert code == 2
    assert "maxRunNum: -3 is below 0" in bad_err
    printed = out + err + bad_out + bad_err
    for secret in (PASSWORD, PASSPHRASE, TOKEN, INLINE_TOKEN):
        assert secret not in printed


def test_python_m_kenornir_end_to_end(secret_config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kenornir", "validate", "batch.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("batch.yaml: valid\n")


def test_help_and_version_import_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from kenornir.cli import main\n"
        "codes = [main(['--help']), main(['--version']), main(['validate', '--help'])]\n"
        "heavy = sorted(m for m in ('yaml', 'jinja2', 'nornir', 'paramiko', 'requests')"
        " if m in sys.modules)\n"
        "print(codes, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr == "[0, 0, 0] []\n"
    assert "gen-config" in done.stdout
    assert f"kenornir {__version__}" in done.stdout
