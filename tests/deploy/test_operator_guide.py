"""docs/operator.md stays true to the code: its settings table is exactly hposteer.service.config.Settings,
every `hposteer ...` command it shows names real subcommands and options of the real parsers, every
file of the repository it names exists, and every compose service it addresses is in the compose file.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from hposteer.client.cli import build_parser as client_parser
from hposteer.service.cli import build_parser as service_parser
from hposteer.service.config import Settings

REPO = Path(__file__).resolve().parents[2]
GUIDE = (REPO / "docs" / "operator.md").read_text()
SERVER_COMMANDS = {"serve", "token", "db"}  # `hposteer` hands these to hposteer.service.cli
SHELL_STOPS = {">", ">>", "|", "&&", ";", "#", "<"}


def section(title: str) -> str:
    start = GUIDE.index(f"\n## {title}\n")
    end = GUIDE.find("\n## ", start + 1)
    return GUIDE[start : end if end > 0 else None]


def code_lines() -> list[str]:
    """The lines of code blocks (continuations joined) and the inline code spans of the guide."""
    blocks = re.findall(r"```\n(.*?)```", GUIDE, flags=re.DOTALL)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    prose = re.sub(r"```\n.*?```", "", GUIDE, flags=re.DOTALL)
    return lines + re.findall(r"`([^`]+)`", prose.replace("\n", " "))


def hposteer_commands() -> list[list[str]]:
    """The words after `hposteer` of every command in the guide's code."""
    commands = []
    for line in code_lines():
        words = line.replace("[", " ").replace("]", " ").split()
        for i, word in enumerate(words):
            # not the value of an option (kubectl -n hposteer, createdb -O hposteer) or a database name
            value = i > 0 and (words[i - 1].startswith("-") or words[i - 1] == "hposteer")
            if word == "hposteer" and not value and i + 1 < len(words):
                rest = []
                for w in words[i + 1 :]:
                    if w in SHELL_STOPS:
                        break
                    rest.append(w)
                if rest:
                    commands.append(rest)
    return commands


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_settings_table_is_the_settings() -> None:
    table = section("Settings")
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table.split("Lease arithmetic")[0]))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from docs/operator.md"
    assert documented - fields == set(), "docs/operator.md documents settings that do not exist"


def test_documented_commands_exist() -> None:
    commands = hposteer_commands()
    assert len(commands) > 20
    for words in commands:
        parser = service_parser() if words[0] in SERVER_COMMANDS else client_parser()
        path = []
        for word in words:
            if word.startswith("-"):
                option = word.split("=", 1)[0]
                assert option in parser._option_string_actions, f"hposteer {' '.join(path)}: no option {option}"
            elif word in subcommands(parser):
                parser = subcommands(parser)[word]
                path.append(word)
        assert path, f"not a command: hposteer {' '.join(words)}"
        # a bare group (`hposteer token` in prose) names the group; anything more must be complete
        assert words == path[:1] or not subcommands(parser), f"hposteer {' '.join(path)} needs a subcommand"


def test_named_files_exist() -> None:
    top = r"(?:deploy/(?:images|compose|k8s|batch)|docs|images|tests)"
    named = set(re.findall(rf"(?<![\w/.-])({top}/[\w./-]*\w)", GUIDE))
    assert {"deploy/compose/docker-compose.yml", "deploy/k8s/overlays/trial"} <= named
    missing = sorted(n for n in named if not (REPO / n).exists())
    assert missing == []


def test_compose_services_addressed_exist() -> None:
    compose = (REPO / "deploy" / "compose" / "docker-compose.yml").read_text()
    services = set(re.findall(r"^  ([a-z0-9-]+):", compose.split("\nservices:\n", 1)[1], flags=re.MULTILINE))
    addressed: set[str] = set()
    for line in code_lines():
        if "docker-compose" not in line and "$C " not in line:
            continue
        try:
            words = shlex.split(line.split("#")[0])
        except ValueError:  # prose with an apostrophe
            continue
        for i, verb in enumerate(words):
            names = [w for w in words[i + 1 :] if not w.startswith("-")]
            if verb in ("exec", "run", "logs") and names:
                addressed.add(names[0])  # then the command run in it
                break
            if verb in ("stop", "start", "restart"):
                addressed.update(names)
                break
    assert {"service-1", "pilot", "postgres", "pilot-token"} <= addressed
    assert addressed <= services, addressed - services


@pytest.mark.parametrize("target", ["deploy-images", "images"])
def test_make_targets_exist(target: str) -> None:
    assert re.search(rf"^{target}:", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
