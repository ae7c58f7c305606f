"""Mutated configs either load or raise ConfigError, and the CLI never shows a traceback."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenornir.cli import main
from kenornir.config import SAMPLE_CONFIG, BatchConfig, ConfigError, load_config

VALID_DIR = Path(__file__).parent / "data" / "configs" / "valid"
ENV = {"KENORNIR_TEST_PASSWORD": "s3cret-pw", "KENORNIR_TEST_TOKEN": "env.token.value"}
FILLED_SAMPLE = (
    SAMPLE_CONFIG.replace("<KEADM-VERSION>", "v1.20.0")
    .replace("<CLOUDCORE-IP:PORT>", "127.0.0.1:10000")
    .replace("<TOKEN>", "t")
    .replace("<EDGE-NODE-IP>", "127.0.0.2")
    .replace("<PASSWORD>", "p")
)
SEEDS: list[Any] = [
    yaml.safe_load(text)
    for text in [FILLED_SAMPLE, *(case.read_text() for case in sorted(VALID_DIR.glob("*.yaml")))]
]
KNOWN_KEYS = sorted(
    {"keadm", "nodes", "maxRunNum", "download", "enable", "url", "verifyChecksum"}
    | {"keadmVersion", "archGroup", "offlinePackageDir", "cmdTplArgs", "keadmBinDir", "preRun"}
    | {"postRun", "nodeName", "arch", "keadmCmd", "copyFrom", "labels", "ssh", "ip", "username"}
    | {"port", "sudo", "auth", "type", "passwordAuth", "privateKeyAuth", "password"}
    | {"privateKeyPath", "passphrase", "<<"}
)
ODD_STRINGS = [
    "",
    " ",
    "~",
    "null",
    "yes",
    "off",
    "0x1F",
    "1:30",
    "1e3",
    "v1.2",
    "1.20",
    "-1",
    "65536",
    "{{",
    "}}",
    "{{ .x }}",
    "{{ nodeName }}",
    "{% if %}",
    "${NOPE}",
    "${KENORNIR_TEST_TOKEN}",
    "<PLACEHOLDER>",
    "../x",
    "~/x",
    "/",
    "files",
    "hooks/verify.sh",
    "keys",
    "a/b",
    "\t",
    "- x",
    "&a",
    "*a",
    "!!binary",
    "reset edge",
    "keadm join",
    "::1",
    "[::1]",
    "0.0.0.0",
    "amd64",
    "arm",
    "password",
    "privateKey",
    "é",
    "\x00",
    "\n",
    "line\nbreak",
    "x" * 300,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from(ODD_STRINGS),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from paths(value, (*prefix, index))


def parent_of(tree: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        tree = tree[step]
    return tree


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    tree = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        path = draw(st.sampled_from(list(paths(tree))))
        # Mostly a value of another type in place of a leaf: that is where converters break.
        operation = draw(st.sampled_from(["retype"] * 4 + ["replace", "delete", "add", "nest"]))
        if not path:  # the root itself
            tree = draw(values) if operation == "replace" else tree
            continue
        parent, last = parent_of(tree, path), path[-1]
        if operation in ("retype", "replace"):
            parent[last] = draw(scalars if operation == "retype" else values)
        elif operation == "delete":
            del parent[last]
        elif operation == "add" and isinstance(parent[last], dict):
            parent[last][draw(st.sampled_from(KNOWN_KEYS))] = draw(values)
        elif operation == "nest":
            for _ in range(draw(st.integers(min_value=1, max_value=60))):
                parent[last] = draw(st.sampled_from([[parent[last]], {"ssh": parent[last]}]))
    return tree


@st.composite
def mangled_texts(draw: st.DrawFn) -> str:
    text = yaml.safe_dump(draw(st.sampled_from(SEEDS)), sort_keys=False, allow_unicode=True)
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    operation = draw(st.sampled_from(["truncate", "insert", "indent", "deep"]))
    if operation == "truncate":
        return text[:cut]
    if operation == "insert":
        return text[:cut] + draw(
            st.sampled_from([":", "- ", "\t", "{", "[", "&x ", "*x", "'", '"'])
        )
    if operation == "indent":
        lines = text.splitlines()
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        lines[index] = "  " * draw(st.integers(min_value=-1, max_value=3)) + lines[index]
        return "\n".join(lines)
    # Past about 450 levels PyYAML's own recursion gives out: both sides of that are covered.
    depth = draw(st.integers(min_value=50, max_value=600))
    return text + "extra: " + "[" * depth + "]" * depth + "\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Relative paths in the seeds point into the valid cases' dir: run from there."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENV.items():
            patch.setenv(name, value)
        patch.chdir(VALID_DIR)
        yield tmp_path_factory.mktemp("fuzz")


def check_loads_or_config_error(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as error:
        assert error.errors
        assert all(line.startswith(f"{path}: ") and "\n" not in line for line in error.errors)
    else:
        assert isinstance(config, BatchConfig)
        assert config.nodes
        assert config.max_run_num >= 1
        assert len({node.name for node in config.nodes}) == len(config.nodes)
        assert all(1 <= node.ssh.port <= 65535 for node in config.nodes)


def check_cli_validate(path: Path) -> None:
    path.chmod(0o600)  # stderr must be empty on success: no warning about an open file mode
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    assert code in (0, 2)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    assert bool(err.getvalue()) == (code == 2)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=mutated_configs())
def test_mutated_configs_load_or_raise_config_error(workdir: Path, tree: Any) -> None:
    path = workdir / "mutated.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True), encoding="utf-8")
    check_loads_or_config_error(path)
    check_cli_validate(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mangled_texts())
def test_mangled_yaml_text_loads_or_raises_config_error(workdir: Path, text: str) -> None:
    path = workdir / "mangled.yaml"
    path.write_text(text, encoding="utf-8")
    check_loads_or_config_error(path)
    check_cli_validate(path)
