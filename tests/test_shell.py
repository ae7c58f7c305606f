"""The remote shell lines: upstream's keadm line, hook lines, launch lines, the sendable words."""

from __future__ import annotations

import shlex

import pytest

from kenornir import shell


class TestKeadmAndHookLines:
    def test_upstream_form(self) -> None:
        line = shell.keadm_line("join --token=x", "/tmp/kubeedge/keadm")
        assert line == "cd /tmp/kubeedge/keadm && ./keadm join --token=x"

    def test_reset_is_answered_with_yes(self) -> None:
        line = shell.keadm_line("reset edge", "/tmp/kubeedge/keadm")
        assert line == "cd /tmp/kubeedge/keadm && yes | ./keadm reset edge"

    def test_only_the_first_word_makes_a_reset(self) -> None:
        line = shell.keadm_line("join --post-run=reset.sh", "/opt/keadm")
        assert line == "cd /opt/keadm && ./keadm join --post-run=reset.sh"

    def test_hook_line_runs_the_uploaded_script_with_bash(self) -> None:
        assert shell.hook_line("pre flight.sh", "/tmp/kubeedge/keadm") == (
            "cd /tmp/kubeedge/keadm && /bin/bash './pre flight.sh'"
        )

    def test_the_work_dir_is_quoted(self) -> None:
        assert shell.keadm_line("version", "/opt/my keadm").startswith("cd '/opt/my keadm' && ")


class TestLaunchLine:
    def test_the_script_comes_on_stdin_so_no_argv_holds_it(self) -> None:
        line = shell.launch_line(
            30, mark="__kenornir_pgid_x=", sudo=False, password_prompt=None, inline_script=None
        )
        assert line == "echo __kenornir_pgid_x=$$; exec timeout -k 5 30 /bin/sh -s"

    def test_sudo_asks_with_the_prompt_given_or_never(self) -> None:
        asking = shell.launch_line(
            30, mark="m=", sudo=True, password_prompt="[p]", inline_script=None
        )
        assert shlex.split(asking)[:6] == ["sudo", "-S", "-p", "[p]", "--", "/bin/sh"]
        silent = shell.launch_line(
            30, mark="m=", sudo=True, password_prompt=None, inline_script=None
        )
        assert shlex.split(silent)[:3] == ["sudo", "-n", "--"]

    def test_an_inline_script_is_one_argument_of_the_inner_shell(self) -> None:
        script = "printf '%s\\n' \"it's\"\n"
        line = shell.launch_line(
            30, mark="m=", sudo=True, password_prompt=None, inline_script=script
        )
        inner = shlex.split(shlex.split(line)[-1])
        assert inner[-3:] == ["/bin/sh", "-c", script]


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("a\nb", "has a newline in it"),
        ("a\rb", "has the control character '\\r' in it"),
        ("a\x7fb", "has the control character '\\x7f' in it"),
        ("a\udcffb", "is not valid UTF-8"),
        ("$(id) 'x' `y` é", None),
    ],
)
def test_which_words_can_reach_the_node_intact(word: str, reason: str | None) -> None:
    assert shell.unsendable_reason(word) == reason
    if reason is None:
        assert shlex.split(shell.words(word)) == [word]
    else:
        with pytest.raises(shell.UnsendableWord):
            shell.words(word)


def test_staging_chain_leaves_tmp_itself_alone() -> None:
    assert shell.staging_chain("/tmp/kubeedge/keadm") == ["/tmp/kubeedge", "/tmp/kubeedge/keadm"]
    with pytest.raises(shell.UnsendableWord):
        shell.staging_chain("relative/dir")
