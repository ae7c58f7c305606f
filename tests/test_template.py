"""keadmCmd rendering and secret masking."""

from __future__ import annotations

import pytest

from kenornir.template import (
    MASK,
    MissingPlaceholders,
    TemplateProblem,
    is_secret_key,
    mask_secrets,
    render_command,
    secret_values,
    token_values,
)

ARGS = {"cmd": "join", "token": "t0k3n", "nodeName": "edge-1", "labels": {"site": "north"}}


class TestRender:
    @pytest.mark.parametrize(
        "template",
        ["{{.token}}", "{{token}}", "{{ token }}", "{{ .token }}", "{{- .token -}}", "{{-token}}"],
    )
    def test_go_and_jinja_spellings_are_the_same_placeholder(self, template: str) -> None:
        assert render_command(f"--token={template}", ARGS) == "--token=t0k3n"

    def test_node_fields_and_label_lookups(self) -> None:
        command = render_command("{{.cmd}} --name={{ nodeName }} --site={{ labels.site }}", ARGS)
        assert command == "join --name=edge-1 --site=north"

    def test_a_dot_inside_an_expression_is_kept(self) -> None:
        assert render_command("{{ labels.site }}.lan", ARGS) == "north.lan"

    def test_text_without_placeholders_is_unchanged(self) -> None:
        text = "reset edge --force ${NOT_A_PLACEHOLDER} {not one either}"
        assert render_command(text, ARGS) == text

    def test_no_autoescape(self) -> None:
        assert render_command("{{ v }}", {"v": "<a&b>"}) == "<a&b>"

    def test_missing_keys_are_all_named(self) -> None:
        with pytest.raises(MissingPlaceholders) as raised:
            render_command("{{.cmd}} --token={{.tok}} --x={{ other }}", ARGS)
        assert raised.value.names == ["other", "tok"]

    def test_missing_attribute_is_a_problem_not_an_empty_string(self) -> None:
        with pytest.raises(TemplateProblem, match="has no attribute 'zone'"):
            render_command("{{ labels.zone }}", ARGS)

    @pytest.mark.parametrize(
        "template",
        ["{{ .cmd ", "{% for %}", "{{ 1 / 0 }}", "{{ cmd.__class__.__mro__ }}", "{{ cmd.mro() }}"],
    )
    def test_broken_or_unsafe_templates_raise_template_problem(self, template: str) -> None:
        with pytest.raises(TemplateProblem):
            render_command(template, ARGS)


class TestSecrets:
    @pytest.mark.parametrize(
        ("key", "secret"),
        [
            ("token", True),
            ("edgeToken", True),
            ("SECRET_X", True),
            ("password", True),
            ("apiKey", True),
            ("cmd", False),
            ("cloudcore", False),
        ],
    )
    def test_secret_keys(self, key: str, secret: bool) -> None:
        assert is_secret_key(key) is secret

    def test_token_values_in_both_spellings_and_quotes(self) -> None:
        command = "join --token=aaa --token bbb --token='c c' --token \"d d\" --tokenizer=x"
        assert token_values(command) == ["aaa", "bbb", "c c", "'c c'", "d d", '"d d"']

    def test_secret_values_collects_credentials_args_and_tokens(self) -> None:
        found = secret_values(
            credentials=("pw", None, ""),
            template_args={"token": "tok", "cmd": "join", "secretKey": "k"},
            commands=("join --token=inline",),
        )
        assert set(found) == {"pw", "tok", "k", "inline"}

    def test_mask_replaces_every_occurrence(self) -> None:
        assert mask_secrets("a=hunter2 b=hunter2", ["hunter2"]) == f"a={MASK} b={MASK}"

    def test_longer_secrets_are_masked_before_their_fragments(self) -> None:
        assert mask_secrets("x=abc.def", ["abc", "abc.def"]) == f"x={MASK}"

    def test_a_short_secret_does_not_eat_words(self) -> None:
        masked = mask_secrets("join --token=tok tok", ["tok"])
        assert masked == f"join --token={MASK} {MASK}"

    def test_secrets_with_symbols_at_their_edges(self) -> None:
        assert mask_secrets("p=!x! q=a!x!b", ["!x!"]) == f"p={MASK} q=a{MASK}b"
        assert mask_secrets("p=a.b*c", ["a.b*c"]) == f"p={MASK}"

    def test_nothing_to_mask(self) -> None:
        assert mask_secrets("plain", []) == "plain"
        assert mask_secrets("plain", [""]) == "plain"
