"""keadmCmd rendering (Jinja2, Go-style `{{.key}}` accepted); finding and masking secrets."""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

MASK = "***"

# Go's text/template addresses map keys as `.key`; Jinja2 names them bare. Only the leading
# dot right after `{{` (or `{{-`) is dropped, so `{{ labels.site }}` keeps its attribute dot.
_GO_FIELD = re.compile(r"\{\{(-?\s*)\.(?=[A-Za-z_])")
_SECRET_KEY_WORDS = ("token", "secret", "password", "passwd", "key")
# One word of a POSIX shell line as written: quoted parts (an unclosed quote runs to the end),
# escapes, `$(...)`, and anything but blanks and the shell's operators.
_SHELL_WORD = re.compile(
    r"""(?:\$\([^)]*\)?|[^ \t\n'"\\;&|<>()]|\\.?|'[^']*'?|"(?:[^"\\]|\\.)*"?)+""", re.DOTALL
)
# keadm's value-less shorthand (cobra's -h), which pflag lets stand before -t in one word.
_FLAG_SHORTHANDS_WITHOUT_VALUE = ("h",)


class TemplateProblem(Exception):
    """keadmCmd cannot be rendered; the message says why, without any value in it."""


class MissingPlaceholders(TemplateProblem):
    """keadmCmd names placeholders that have no value."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        super().__init__(", ".join(self.names))


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    # Sandboxed and immutable: keadmCmd comes from a config file and may not reach into Python.
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def render_command(template_text: str, context: Mapping[str, object]) -> str:
    """Render one keadmCmd against `context` (cmdTplArgs plus the node's own fields).

    Raises:
        MissingPlaceholders: the template names keys that `context` does not have.
        TemplateProblem: any other syntax or rendering fault.
    """
    environment = _environment()
    source = _GO_FIELD.sub(r"{{\1", template_text)
    try:
        parsed = environment.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}") from None
    missing = (
        jinja2.meta.find_undeclared_variables(parsed) - set(context) - set(environment.globals)
    )
    if missing:
        raise MissingPlaceholders(missing)
    try:
        return environment.from_string(source).render(context)
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(f"placeholder has no value: {exc.message}") from None
    # The template is user input and Jinja2 evaluates expressions in it (`{{ 1 / 0 }}`): whatever
    # it raises is a fault in the config, to be reported like any other.
    except Exception as exc:
        raise TemplateProblem(f"cannot render: {type(exc).__name__}") from None


def is_secret_key(key: str) -> bool:
    """cmdTplArgs keys whose values are treated as secrets."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_KEY_WORDS)


def token_values(command: str) -> list[str]:
    """What keadm takes as its token in a rendered command, as keadm gets it and as written.

    keadm reads its flags with pflag once the shell has split and unquoted the line: the token
    is `--token=X`, `--token X`, `-t X`, `-t=X` or `-tX` (also after `-h` in the same word).
    A value the line spells otherwise (quoted, escaped) is given in both spellings.
    """
    words = [(match.group(), _unquoted(match.group())) for match in _SHELL_WORD.finditer(command)]
    found: list[str] = []
    index = 0
    while index < len(words):
        written, word = words[index]
        index += 1
        flag = _token_flag(word)
        if flag is None:
            continue
        if word != flag:
            found += [word[len(flag) :], _written_tail(written, flag)]
            if flag[-1].isalnum():  # `-tX`: no word boundary lets X alone be masked there
                found.append(written)
        elif not flag.endswith("=") and index < len(words):
            # pflag takes the next word as the value, whatever it looks like.
            found += reversed(words[index])
            index += 1
    return [value for value in dict.fromkeys(found) if value]


def _token_flag(word: str) -> str | None:
    """The flag part of a (unquoted) word that gives keadm its token; None for other words."""
    if word.startswith("--"):
        name, equals, _ = word.partition("=")
        return name + equals if name == "--token" else None
    end = 1
    while word[end : end + 1] in _FLAG_SHORTHANDS_WITHOUT_VALUE and word[end + 1 : end + 2] != "=":
        end += 1
    if not word.startswith("-") or word[end : end + 1] != "t":
        return None
    # `-t=X` gives X; pflag makes `-t=` alone the token "=", an empty value here rather than
    # a "secret" that would mask every "=".
    return word[: end + 2] if word[end + 1 : end + 2] == "=" else word[: end + 1]


def _unquoted(written: str) -> str:
    """A shell word as the program gets it."""
    try:
        return "".join(shlex.split(written))
    except ValueError:  # an unclosed quote: the shell refuses the line, yet it is still shown
        return written.replace('"', "").replace("'", "")


def _written_tail(written: str, flag: str) -> str:
    """The part of a written word after its flag part (`flag`, unquoted); the whole word when
    one quote spans both."""
    for cut in range(1, len(written) + 1):
        try:
            if "".join(shlex.split(written[:cut])) == flag:
                return written[cut:]
        except ValueError:
            continue
    return written


def secret_values(
    *,
    credentials: Iterable[str | None],
    template_args: Mapping[str, str],
    commands: Iterable[str],
    config_secrets: Iterable[str] = (),
) -> tuple[str, ...]:
    """Every secret of a node: its credentials, secret-looking cmdTplArgs, the token values of
    its commands, and `config_secrets`, those of the whole config (values read from the
    environment, the download URL's credentials)."""
    found = {value for value in credentials if value}
    found.update(value for key, value in template_args.items() if value and is_secret_key(key))
    for command in commands:
        found.update(token_values(command))
    found.update(value for value in config_secrets if value)
    return tuple(sorted(found, key=lambda value: (-len(value), value)))


def url_secrets(url: str) -> list[str]:
    """The credentials in a URL's `user:password@`: the password as written and decoded (a lone
    `token@` is taken as the credential it usually is)."""
    authority = url.partition("://")[2]
    for end in "/?#":
        authority = authority.partition(end)[0]
    userinfo, at, _ = authority.rpartition("@")
    if not at:
        return []
    user, colon, password = userinfo.partition(":")
    credential = password if colon else user
    return [value for value in dict.fromkeys([credential, unquote(credential)]) if value]


def masked_url(url: str) -> str:
    """url as it may be shown: `https://user:***@mirror/...`, never the credentials themselves."""
    return mask_secrets(url, url_secrets(url))


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in `text` by `***`, in its own spelling and in those repr()
    and JSON escape it to (a log line's `%r`, an exception's text).

    An alphanumeric edge of a secret matches only at a word boundary, so a short password such
    as `tok` hides itself without turning `--token` into `--***en`; longer secrets are tried first
    so no fragment of one survives.
    """
    pattern = _secrets_pattern(frozenset(secrets))
    return text if pattern is None else pattern.sub(MASK, text)


def mask_record(value: Any, secrets: Iterable[str]) -> Any:
    """A JSON-like value (mappings, lists, text) with every secret masked in every text, keys
    included. Mask before serialising: JSON escapes a `"`, `\\` or non-ASCII of a secret, which a
    mask of the JSON text would miss (and could cut an escape in two)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, Mapping):
        return {
            mask_record(key, secrets): mask_record(item, secrets) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_record(item, secrets) for item in value]
    return value


@functools.lru_cache(maxsize=1024)
def _secrets_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    spellings = {spelling for secret in secrets if secret for spelling in _spellings(secret)}
    alternatives = sorted(spellings, key=lambda spelling: (-len(spelling), spelling))
    return re.compile("|".join(map(_bounded, alternatives))) if alternatives else None


def _spellings(secret: str) -> set[str]:
    return {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


def _bounded(secret: str) -> str:
    before = "(?<![A-Za-z0-9])" if secret[0].isalnum() else ""
    after = "(?![A-Za-z0-9])" if secret[-1].isalnum() else ""
    return f"{before}{re.escape(secret)}{after}"
