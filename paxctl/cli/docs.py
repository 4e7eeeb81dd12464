"""Shell completion scripts and the man page, generated from the click definitions.

The generated files are committed (``completions/``, ``man/paxctl.1``) so that packagers and
users need not run paxctl to get them; a test regenerates them and fails when they drift.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from paxctl import __version__

SHELLS = ("bash", "zsh", "fish")

EXIT_CODES = [
    (0, "success"),
    (1, "lock: not acquired (-n), or not within -w SECONDS (flock's convention; -E N changes it)"),
    (2, "usage error (unknown flag, missing argument, no cluster to talk to, a bad HOST:PORT)"),
    (3, "no such znode (NoNode); elect --leader: no leader"),
    (
        4,
        "conflict: NodeExists, BadVersion, NotEmpty, a stale fencing token, a lock limit "
        "that disagrees with the other holders'",
    ),
    (5, "cluster unavailable: no quorum, no connection, no answer within --timeout"),
    (6, "indeterminate: a write may or may not have taken effect (read before retrying)"),
    (7, "bad data: bad arguments, data too large, a damaged file (node data, an import dump)"),
    (
        8,
        "session lost: the session expired; lock, elect and run-once: the lock or leadership "
        "was lost while held, and the command was killed first",
    ),
    (9, "sim: a seed broke an invariant"),
    (70, "internal: a node stopped on a failed write or fsync (never retried), or a bug"),
    (130, "interrupted by Ctrl-C"),
    (141, "stdout was closed early (paxctl tree | head): quietly, as SIGPIPE would"),
]

#: lock, elect, run-once and watch -- CMD: what the exit status is when CMD ran.
CHILD_EXIT = (
    "lock, elect and run-once exit with CMD's own status when CMD ran and ended by itself, "
    "or 128+N when a signal N ended it"
)

ENVIRONMENT = [
    ("PAXCTL_SERVERS", "HOST:PORT,... of the cluster, when -s/--servers is not given"),
    ("NO_COLOR", "no colour in human output (there is none either when stdout is not a terminal)"),
    (
        "PAXCTL_SSH",
        "the ssh command that starts and stops nodes on other hosts (default ssh; e.g. "
        "ssh -F FILE); -o BatchMode=yes is always added",
    ),
    ("PAXCTL_REMOTE_PAXCTL", "the paxctl to run on other hosts, over what cluster.json says"),
    (
        "PAXCTL_HISTORY",
        "the history file of paxctl shell (default $XDG_STATE_HOME/paxctl/history, "
        "~/.local/state/paxctl/history)",
    ),
    ("PAXCTL_WATCH_TYPE, _PATH, _ZXID", "set for the command of watch -- CMD, per event"),
    (
        "PAXCTL_FENCE",
        "set for the command of lock and elect: NAME:TOKEN (elect: "
        "/paxctl/elections/NAME:TOKEN), for set/rm --fence",
    ),
    (
        "PAXCTL_LOCK_NAME, PAXCTL_LOCK_PATH, PAXCTL_LOCK_NODE, PAXCTL_LOCK_TOKEN",
        "set for the command of lock",
    ),
    ("PAXCTL_ELECTION_NAME, _PATH, _NODE, _TOKEN, _VALUE", "set for the command of elect"),
    ("PAXCTL_RUN_ONCE_NAME, _SLOT, _RECORD", "set for the command of run-once"),
    (
        "PAXCTL_UVLOOP",
        "0: a node runs on plain asyncio even where uvloop (the fast extra) is installed",
    ),
]

EXAMPLES = [
    ("Start a local 3-node cluster and write a first znode",
     "paxctl cluster up\npaxctl create /hello world\npaxctl get /hello"),
    ("Compare-and-set", "paxctl set /config new-value --version 3"),
    ("A script reads data as JSON (binary data is in data_base64)",
     "paxctl get /config/db -o json |\n"
     "  python3 -c 'import json,sys; print(json.load(sys.stdin)[\"data\"])'"),
    ("Look at a subtree", "paxctl tree /config"),
    ("React to every change under /config, one event at a time",
     "paxctl watch -r /config -- sh -c 'echo \"$PAXCTL_WATCH_TYPE $PAXCTL_WATCH_PATH\"'"),
    ("Back a subtree up, and load it into another cluster",
     "paxctl export /config > config.json\nPAXCTL_SERVERS=other:7101 paxctl import config.json"),
    ("Explore interactively (cd, ls, tab completion of live paths)", "paxctl shell"),
    ("Machine-readable cluster state, e.g. the leader's pid",
     "paxctl cluster status --json"),
    ("Hunt for bugs in the consensus core", "paxctl sim --seeds 1000 -j 2"),
    ("Run a job on one host at a time, and write only while still holding the lock",
     "paxctl lock backup -- sh -c \\\n"
     "  'make-backup && paxctl set /backup/last ok --fence \"$PAXCTL_FENCE\"'"),
    ("Run a service only where it leads", "paxctl elect scheduler -- ./scheduler"),
    ("A cron job that runs on exactly one host every 5 minutes (crontab of every host)",
     "*/5 * * * * paxctl run-once report --every 5m -- ./report.sh"),
]  # fmt: skip


#: bash: the words bash split at COMP_WORDBREAKS (``-s HOST:PORT`` arrives as three words) are
#: joined again where the line has no blank between them, and bash is handed back only the part
#: after the last break; errors never reach the terminal; a completion ending in ``/`` (a znode
#: with children) gets no space, so that TAB goes on into it.
_BASH_SOURCE = r"""%(complete_func)s() {
    local line=${COMP_LINE-} word response completion type value i cword=0
    local -a words=() lines=()
    [[ -n $line ]] || printf -v line '%%s ' "${COMP_WORDS[@]}"
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        word=${COMP_WORDS[i]}
        if ((i > 0)) && [[ $line != [[:blank:]]* ]]; then
            words[${#words[@]} - 1]+=$word
        else
            words+=("$word")
        fi
        line=${line#"${line%%%%[![:blank:]]*}"}
        line=${line#"$word"}
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
    local cur=${words[cword]-}
    local kept=${cur%%"${COMP_WORDS[COMP_CWORD]-}"}
    response=$(IFS=$'\n'; env COMP_WORDS="${words[*]}" COMP_CWORD=$cword \
%(complete_var)s=bash_complete "$1" 2>/dev/null)
    [[ -n $response ]] && mapfile -t lines <<< "$response"
    for completion in "${lines[@]}"; do
        IFS=',' read -r type value <<< "$completion"
        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            [[ $value == */ ]] && compopt -o nospace
            [[ -n $kept && $value == "$kept"* ]] && value=${value#"$kept"}
            COMPREPLY+=("$value")
        fi
    done
    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""

#: zsh: errors never reach the terminal; a completion ending in ``/`` gets no space.
_ZSH_SOURCE = r"""#compdef %(prog_name)s

%(complete_func)s() {
    local -a completions
    local -a completions_with_descriptions
    local -a directories
    local -a response
    (( ! $+commands[%(prog_name)s] )) && return 1

    response=("${(@f)$(env COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT-1)) \
%(complete_var)s=zsh_complete %(prog_name)s 2>/dev/null)}")

    for type key descr in ${response}; do
        if [[ "$type" == "plain" ]]; then
            if [[ "$descr" == "_" && "$key" == */ ]]; then
                directories+=("$key")
            elif [[ "$descr" == "_" ]]; then
                completions+=("$key")
            else
                completions_with_descriptions+=("$key":"$descr")
            fi
        elif [[ "$type" == "dir" ]]; then
            _path_files -/
        elif [[ "$type" == "file" ]]; then
            _path_files -f
        fi
    done

    if [ -n "$completions_with_descriptions" ]; then
        _describe -V unsorted completions_with_descriptions -U
    fi

    if [ -n "$completions" ]; then
        compadd -U -V unsorted -a completions
    fi

    if [ -n "$directories" ]; then
        compadd -U -V unsorted -S '' -a directories
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    # autoload from fpath, call function directly
    %(complete_func)s "$@"
else
    # eval/source/. command, register function for later
    compdef %(complete_func)s %(prog_name)s
fi
"""

#: fish: errors never reach the terminal; fish itself adds no space after a trailing ``/``.
#: Split at the first comma only: a znode name may hold commas.
_FISH_SOURCE = r"""function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
COMP_CWORD=(commandline -t) %(prog_name)s 2>/dev/null);

    for completion in $response;
        set -l metadata (string split -m 1 "," $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments "(%(complete_func)s)";
"""

_SOURCES = {"bash": _BASH_SOURCE, "zsh": _ZSH_SOURCE, "fish": _FISH_SOURCE}


def completion_script(cli: click.Command, shell: str) -> str:
    """The completion script for ``shell``: click's protocol, with scripts of our own that
    never print errors into the command line (see ``_SOURCES``)."""
    cls = get_completion_class(shell)
    if cls is None or shell not in _SOURCES:
        raise click.UsageError(f"unsupported shell {shell!r}; use one of {', '.join(SHELLS)}")
    ours = type(cls.__name__, (cls,), {"source_template": _SOURCES[shell]})
    script: str = ours(cli, {}, "paxctl", "_PAXCTL_COMPLETE").source()
    return script if script.endswith("\n") else script + "\n"


def _roff(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _help(text: str) -> str:
    """A command's help for roff: paragraphs filled, click's ``\\b`` blocks kept verbatim."""
    out = []
    for para in text.strip().split("\n\n"):
        para = textwrap.dedent(para).strip("\n")
        if para.startswith("\b\n"):
            out.append(".nf\n" + _roff(para[2:]) + "\n.fi")
        else:
            out.append(_roff(para))
    return "\n.PP\n".join(out) if len(out) > 1 else "".join(out)


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # also the subcommands a lazy group imports on use
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += _commands(cmd, full)
        else:
            out.append((full, cmd))
            # a command's own words that hand over to another (``paxctl lock status``)
            for word, sub in sorted(getattr(cmd, "subcommands", {}).items()):
                out.append((f"{full} {word}", sub))
    return out


def man_page(cli: click.Group) -> str:
    """``man/paxctl.1``: every command and option, the exit codes, environment, examples."""
    ctx = click.Context(cli, info_name="paxctl", **cli.context_settings)
    lines = [
        f'.TH PAXCTL 1 "" "paxctl {__version__}" "User Commands"',
        ".SH NAME",
        "paxctl \\- a coordination service built on Multi\\-Paxos",
        ".SH SYNOPSIS",
        ".B paxctl",
        "[\\fB\\-v\\fR] [\\fB\\-s\\fR \\fIHOST:PORT,...\\fR] [\\fB\\-o\\fR \\fIFORMAT\\fR] "
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        _help(cli.help or ""),
        ".SH OPTIONS",
        "Before the command (\\fBpaxctl \\-v \\-s HOST:PORT get /x\\fR); the command's own "
        "\\fB\\-s\\fR and \\fB\\-o\\fR win over these:",
    ]
    for param in cli.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            lines += [".TP", f"\\fB{_roff(record[0])}\\fR", _roff(record[1] or "")]
    lines.append(".SH COMMANDS")
    for full, cmd in _commands(cli, "paxctl"):
        sub = click.Context(cmd, info_name=full, parent=ctx)
        usage = " ".join(cmd.collect_usage_pieces(sub))
        lines.append(".SS " + _roff(f"{full} {usage}"))
        lines.append(_help(cmd.help or cmd.short_help or ""))
        for param in cmd.get_params(sub):
            if isinstance(param, click.Argument):
                continue  # arguments are in the usage line (and click versions render them apart)
            record = param.get_help_record(sub)
            if record is None:
                continue
            opts, help_text = record
            lines += [".TP", f"\\fB{_roff(opts)}\\fR", _roff(help_text or "")]
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_CODES:
        lines += [".TP", f"\\fB{code}\\fR", _roff(meaning)]
    lines += [".PP", _roff(CHILD_EXIT + ".")]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{name}\\fR", _roff(meaning)]
    lines.append(".SH EXAMPLES")
    for title, body in EXAMPLES:
        lines += [".PP", _roff(title) + ":", ".PP", ".nf", ".RS", _roff(body), ".RE", ".fi"]
    lines += [".SH SEE ALSO", "The README of the paxctl project.", ""]
    return "\n".join(lines)  # no date in the page: regenerating it is reproducible


def generated_files(cli: click.Group) -> dict[str, str]:
    """Every generated file, by path relative to the repository root."""
    files = {f"completions/paxctl.{shell}": completion_script(cli, shell) for shell in SHELLS}
    files["man/paxctl.1"] = man_page(cli)
    return files


def root_command() -> click.Group:
    """``paxctl`` itself, for the commands below (run under it, as every subcommand)."""
    root = click.get_current_context().find_root().command
    assert isinstance(root, click.Group)
    return root


@click.command()
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    For bash: eval "$(paxctl completion bash)" in ~/.bashrc, or install the committed
    completions/paxctl.bash.
    """
    click.echo(completion_script(root_command(), shell), nl=False)


def default_man_dir() -> str:
    """PREFIX/share/man: where ``pip install .`` puts the page (pyproject's data-files), and
    where man-db looks for the pages of a PREFIX/bin on $PATH (a venv's too)."""
    import sysconfig

    return os.path.join(sysconfig.get_path("data"), "share", "man")


@click.command("man")
@click.option(
    "--install",
    is_flag=True,
    help="Write the page where `man paxctl` finds it (for `pip install -e`, which does not).",
)
@click.option(
    "--man-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="With --install: the man directory to write man1/paxctl.1 in "
    "(default: PREFIX/share/man of this Python, next to its bin/paxctl).",
)
def man_(install: bool, man_dir: str | None) -> None:
    """Show paxctl's manual page; piped, print its roff source.

    `man paxctl` finds the page after `pip install .`; after `pip install -e .` run
    `paxctl man --install` once (or use `paxctl man`).
    """
    import shutil
    import subprocess
    import tempfile

    page = man_page(root_command())
    if install:
        target = Path(man_dir or default_man_dir()) / "man1" / "paxctl.1"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(page)
        except OSError as exc:
            raise click.ClickException(f"{target}: {exc.strerror}") from None
        click.echo(f"wrote {target}", err=True)
        return
    viewer = shutil.which("man")
    if not (sys.stdout.isatty() and viewer):
        click.echo(page, nl=False)
        return
    with tempfile.NamedTemporaryFile("w", prefix="paxctl-", suffix=".1") as f:
        f.write(page)
        f.flush()
        code = subprocess.run([viewer, "-l", f.name], check=False).returncode
    if code:
        raise SystemExit(code)


def main() -> None:
    """``python -m paxctl.cli.docs [ROOT]``: regenerate the committed files under ROOT."""
    from paxctl.cli.main import cli

    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for rel, text in generated_files(cli).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
