"""keadmCmd rendering (Jinja2, Go-style `{{.key}}` accepted) and the one secret masking function."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

MASK = "***"

# Go's text/template addresses map keys as `.key`; Jinja2 names them bare. Only the leading
# dot right after `{{` (or `{{-`) is dropped, so `{{ labels.site }}` keeps its attribute dot.
_GO_FIELD = re.compile(r"\{\{(-?\s*)\.(?=[A-Za-z_])")
_SECRET_KEY_WORDS = ("token", "secret", "password", "passwd", "key")
_TOKEN_FLAG = re.compile(r"""--token(?:=|\s+)(?:"([^"]*)"|'([^']*)'|([^\s"']+))""")


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
    """The values given to `--token` in a rendered command, in either spelling."""
    return [
        next(group for group in match.groups() if group is not None)
        for match in _TOKEN_FLAG.finditer(command)
    ]


def secret_values(
    *,
    credentials: Iterable[str | None],
    template_args: Mapping[str, str],
    commands: Iterable[str],
) -> tuple[str, ...]:
    """Every secret of a node: its credentials, secret-looking cmdTplArgs, `--token` values."""
    found = {value for value in credentials if value}
    found.update(value for key, value in template_args.items() if value and is_secret_key(key))
    for command in commands:
        found.update(value for value in token_values(command) if value)
    return tuple(sorted(found, key=lambda value: (-len(value), value)))


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in `text` by `***`.

    An alphanumeric edge of a secret matches only at a word boundary, so a short password such
    as `tok` hides itself without turning `--token` into `--***en`; longer secrets are tried first
    so no fragment of one survives.
    """
    alternatives = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
    if not alternatives:
        return text
    return re.sub("|".join(_bounded(secret) for secret in alternatives), MASK, text)


def _bounded(secret: str) -> str:
    before = "(?<![A-Za-z0-9])" if secret[0].isalnum() else ""
    after = "(?![A-Za-z0-9])" if secret[-1].isalnum() else ""
    return f"{before}{re.escape(secret)}{after}"
