"""``llm-optimizer completion bash|zsh``: shell completion written from the parser
itself, so every command, choice and option the CLI has is completed and none it lacks.

  source <(llm-optimizer completion bash)      # ~/.bashrc
  source <(llm-optimizer completion zsh)       # ~/.zshrc (through bashcompinit)
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

FUNCTION = "_llm_optimizer"


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """A command's options and the choices of its positional arguments."""
    out: list[str] = []
    for action in parser._actions:
        if action.option_strings:
            out += [o for o in action.option_strings if o.startswith("--") or len(o) == 2]
        elif action.choices and not isinstance(action, argparse._SubParsersAction):
            out += [str(c) for c in action.choices]
    return out


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _valued(parser: argparse.ArgumentParser) -> list[str]:
    """The top-level options that take a value (the word after them is not a command)."""
    return [
        o
        for a in parser._actions
        if a.option_strings
        and a.nargs != 0
        and not isinstance(a, argparse._VersionAction)
        and not isinstance(a, argparse._HelpAction)
        for o in a.option_strings
    ]


def bash(parser: argparse.ArgumentParser, prog: str = "llm-optimizer") -> str:
    commands = _subcommands(parser)
    top = " ".join([*commands, *_words(parser)])
    valued = "|".join(_valued(parser)) or "--"
    cases = "\n".join(
        f"    {shlex.quote(name)}) words={shlex.quote(' '.join(_words(sub)))} ;;"
        for name, sub in commands.items()
    )
    return f"""# bash completion for {prog} (llm-optimizer completion bash)
{FUNCTION}() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" words="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in
      {valued}) ((i++)) ;;
      -*) ;;
      *) cmd="${{COMP_WORDS[i]}}"; break ;;
    esac
  done
  case "$cmd" in
    "") words={shlex.quote(top)} ;;
{cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F {FUNCTION} {prog}
"""


def zsh(parser: argparse.ArgumentParser, prog: str = "llm-optimizer") -> str:
    return (
        f"#compdef {prog}\n# zsh completion for {prog} (llm-optimizer completion zsh), "
        "through zsh's bash completion layer\nautoload -U +X bashcompinit && bashcompinit\n"
        + bash(parser, prog)
    )


def add_parser(sub: Any) -> None:
    comp = sub.add_parser(
        "completion",
        help="print shell completion for bash or zsh",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    comp.add_argument("shell", choices=["bash", "zsh"])
    comp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    parser = args.root_parser  # the whole CLI, set by main.build_parser
    print(bash(parser) if args.shell == "bash" else zsh(parser), end="")
    return 0
