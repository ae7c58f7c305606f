"""Checks across fields (two uploads with one name, what the packages need) and each node's
command rendered from its template, secrets gathered for masking."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kenornir.config.model import (
    ARCHES,
    DEFAULT_DOWNLOAD_BASE,
    DownloadConfig,
    KeadmConfig,
    NodeConfig,
    SSHAuth,
    SSHConfig,
)
from kenornir.config.reader import Reader
from kenornir.shell import upload_name_problem
from kenornir.template import (
    MissingPlaceholders,
    TemplateProblem,
    mask_secrets,
    render_command,
    secret_values,
    token_values,
    url_secrets,
)


@dataclass(frozen=True)
class NodeDraft:
    """What was read of one node before its command is rendered."""

    index: int
    name: str | None
    ssh: SSHConfig | None
    template: str | None
    copy_from: str | None
    keadm_bin_dir: str | None
    labels: dict[str, str]
    pre_run: tuple[str, ...]
    post_run: tuple[str, ...]
    arch: str | None
    site: str | None


def check_uploads(reader: Reader, draft: NodeDraft) -> None:
    """Every upload lands flat in the stage dir: two files with one name would overwrite."""
    path = f"nodes[{draft.index}]"
    uploads: dict[str, tuple[str, str]] = {}  # name on the node -> (local path, field)
    if draft.keadm_bin_dir is None:
        uploads["keadm"] = ("", "")  # the keadm binary
    if draft.copy_from is not None:
        try:
            entries = sorted(Path(draft.copy_from).iterdir())
        except OSError as exc:
            reader.fail(f"{path}.copyFrom", f"cannot be listed: {exc.strerror} (check it)")
            entries = []
        for entry in entries:
            if entry.is_dir():
                reader.fail(
                    f"{path}.copyFrom",
                    f"has the subdirectory '{entry.name}' (copyFrom takes files only: move it out)",
                )
            else:
                _add_upload(reader, uploads, entry.name, str(entry), f"{path}.copyFrom")
    for key, scripts in (("preRun", draft.pre_run), ("postRun", draft.post_run)):
        for script in scripts:
            _add_upload(reader, uploads, Path(script).name, script, f"{path}.{key}")


def _add_upload(
    reader: Reader, uploads: dict[str, tuple[str, str]], name: str, source: str, path: str
) -> None:
    problem = upload_name_problem(name)
    if problem is not None:
        reader.fail(path, f"the file name {name!r} {problem} (rename the file)")
        return
    local, field = uploads.get(name, (source, path))
    if not local:
        reader.fail(path, "has a file named 'keadm', which would replace keadm itself (rename it)")
    elif local != source:
        reader.fail(
            path,
            f"'{name}' has the same name as a file from {field} and would overwrite it on the "
            "node (rename one)",
        )
    else:
        uploads[name] = (source, path)


def check_packages(reader: Reader, keadm: KeadmConfig, drafts: list[NodeDraft]) -> KeadmConfig:
    """Cross-field checks for the controller side; returns keadm with its download URL resolved."""
    if "keadm" in reader.failed or all(draft.keadm_bin_dir is not None for draft in drafts):
        return keadm
    if keadm.keadm_version is None and "keadm.keadmVersion" not in reader.failed:
        reader.fail(
            "keadm.keadmVersion",
            "is required (set the keadm version to install, e.g. v1.20.0; "
            "only nodes with keadmBinDir can do without)",
        )
    if not keadm.arch_group and "keadm.archGroup" not in reader.failed:
        reader.fail(
            "keadm.archGroup",
            f"is required (list the architectures to prepare: {', '.join(ARCHES)})",
        )
    for draft in drafts:
        if draft.arch and draft.keadm_bin_dir is None and draft.arch not in keadm.arch_group:
            reader.fail(
                f"nodes[{draft.index}].arch",
                f"'{draft.arch}' is not in keadm.archGroup (add it there: no keadm is prepared "
                "for it)",
            )
    offline_dir = keadm.offline_package_dir
    if not keadm.download.enable:
        if offline_dir is None and "keadm.offlinePackageDir" not in reader.failed:
            reader.fail(
                "keadm.offlinePackageDir",
                "is required when keadm.download.enable is false (set the directory holding "
                "<arch>/keadm-<version>-linux-<arch>.tar.gz)",
            )
        elif offline_dir is not None:
            offline_dir = reader.existing_path(
                offline_dir, "keadm.offlinePackageDir", directory=True
            )
    url = keadm.download.url
    if url is None and keadm.keadm_version is not None:
        url = f"{DEFAULT_DOWNLOAD_BASE}/{keadm.keadm_version}"
    download = DownloadConfig(keadm.download.enable, url, keadm.download.verify_checksum)
    return KeadmConfig(
        download=download,
        keadm_version=keadm.keadm_version,
        arch_group=keadm.arch_group,
        offline_package_dir=offline_dir,
        cmd_tpl_args=keadm.cmd_tpl_args,
        keadm_bin_dir=keadm.keadm_bin_dir,
        pre_run=keadm.pre_run,
        post_run=keadm.post_run,
    )


def _credentials(auth: SSHAuth) -> tuple[str | None, str | None]:
    return auth.password, auth.passphrase


def finish_node(
    reader: Reader,
    draft: NodeDraft,
    keadm: KeadmConfig,
    template_args: dict[str, str],
    failed_args: set[str],
) -> NodeConfig | None:
    """Render the node's command; a node with any error yields None (the error is recorded)."""
    if draft.template is None:
        return None
    path = f"nodes[{draft.index}].keadmCmd"
    context: dict[str, object] = {
        "nodeName": draft.name or "",
        "ip": draft.ssh.ip if draft.ssh else "",
        "labels": draft.labels,
        # Args that failed to read were reported already; a placeholder for them avoids a second
        # "no value" error about the same mistake.
        **dict.fromkeys(failed_args, ""),
        **template_args,
    }
    try:
        command = render_command(draft.template, context).strip()
    except MissingPlaceholders as exc:
        names = ", ".join(f"'{name}'" for name in exc.names)
        one = len(exc.names) == 1
        node = f" for node {draft.name}" if draft.name else ""
        reader.fail(
            path,
            f"{'placeholder' if one else 'placeholders'} {names} {'has' if one else 'have'} "
            f"no value{node} (add {'it' if one else 'them'} to keadm.cmdTplArgs)",
        )
        return None
    except TemplateProblem as exc:
        # Jinja2 may quote a word of the template, which could be an inline token.
        quoted = token_values(draft.template) + list(template_args.values())
        reader.fail(path, f"{mask_secrets(str(exc), quoted)} (check the {{{{ }}}} placeholders)")
        return None
    if not command:
        reader.fail(path, "renders to an empty command (give the keadm command, e.g. join ...)")
    elif "\n" in command:
        reader.fail(path, "renders to more than one line (write the command on one line)")
    elif command.split()[0] == "keadm":
        reader.fail(path, "starts with 'keadm' (drop it: kenornir runs ./keadm <keadmCmd>)")
    if path in reader.failed or draft.name is None or draft.ssh is None:
        return None
    auth = draft.ssh.auth
    secrets = secret_values(
        credentials=(
            auth.password,
            auth.passphrase,
            *(secret for jump in draft.ssh.proxy_jump for secret in _credentials(jump.auth)),
        ),
        template_args=keadm.cmd_tpl_args,
        commands=(command,),
        config_secrets=(*reader.environment_values, *url_secrets(keadm.download.url or "")),
    )
    return NodeConfig(
        name=draft.name,
        ssh=draft.ssh,
        keadm_cmd_template=draft.template,
        keadm_cmd=command,
        keadm_cmd_masked=mask_secrets(command, secrets),
        copy_from=draft.copy_from,
        pre_run=draft.pre_run,
        post_run=draft.post_run,
        keadm_bin_dir=draft.keadm_bin_dir,
        labels=draft.labels,
        arch=draft.arch,
        site=draft.site,
        secrets=secrets,
    )
