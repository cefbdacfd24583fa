"""Split an exec string into words as a POSIX shell would, refusing what a host shell would run.

iDDS hands ``steeringExec`` to bash on its own host (docs/steering.md#the-two-accepted-forms), so ``$(...)``,
backticks, ``$VAR``, ``;``, ``|``, ``&``, redirections and the like would run or expand *there*,
before any container starts. hposteer runs no host shell: the words are split with POSIX
quoting (the same words as ``shlex.split``) and any such syntax is refused with a message
naming it, instead of being passed on literally with another meaning.

The one expansion kept is the working directory: ``$(pwd)``, ``$PWD`` and ``${PWD}`` outside
single quotes become ``PWD_MARK``, which the caller replaces with the directory the container
sees (the iDDS form mounts ``"$(pwd)":/PATH``; ``--infile=$PWD/%IN`` is phpo's documented example).
"""

from __future__ import annotations

import re

PWD_MARK = "\x00PWD\x00"
MAX_LENGTH = 8192

_PWD_FORMS = ("$(pwd)", "${PWD}")
_PWD_NAME = re.compile(r"\$PWD(?![A-Za-z0-9_])")
# What follows a `$` when the shell would expand it: a name, a brace or a parenthesis, a digit or
# a special parameter (and, outside quotes, bash's $'...' and $"...").
_EXPANDS = re.compile(r"\$[A-Za-z_0-9{(?#@*!$-]")
_EXPANDS_UNQUOTED = re.compile(r"\$[A-Za-z_0-9{(?#@*!$'\"-]")
_OPERATORS = set(";&|<>()")
_DOUBLE_ESCAPES = set('$`"\\\n')


class ShellSyntaxError(ValueError):
    """The exec string holds syntax a host shell would act on; the message names it."""


def split_words(text: str) -> list[str]:
    """The words of ``text`` (POSIX quoting), with the working directory as ``PWD_MARK``."""
    if len(text) > MAX_LENGTH:
        raise ShellSyntaxError(f"is {len(text)} characters long; at most {MAX_LENGTH} are accepted")
    bad = next((c for c in text if (ord(c) < 32 and c not in "\t\n") or ord(c) == 127), None)
    if bad is not None:
        raise ShellSyntaxError(f"holds the control character {bad!r}")
    return _Splitter(text).words()


class _Splitter:
    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.words_: list[str] = []
        self.word: list[str] | None = None  # None: between words

    def add(self, piece: str) -> None:
        if self.word is None:
            self.word = []
        self.word.append(piece)

    def end_word(self) -> None:
        if self.word is not None:
            self.words_.append("".join(self.word))
            self.word = None

    def words(self) -> list[str]:
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c in " \t":
                self.end_word()
                self.i += 1
            elif c == "\n":
                raise ShellSyntaxError(
                    "holds a line break outside quotes (a host shell would start a new command there)"
                )
            elif c == "\\":
                if self.i + 1 >= len(text):
                    raise ShellSyntaxError("ends with a lone backslash")
                if text[self.i + 1] != "\n":  # backslash-newline joins lines
                    self.add(text[self.i + 1])
                self.i += 2
            elif c == "'":
                end = text.find("'", self.i + 1)
                if end < 0:
                    raise ShellSyntaxError("has an unterminated single quote")
                self.add(text[self.i + 1 : end])
                self.i = end + 1
            elif c == '"':
                self.add("")
                self.i += 1
                self.double_quoted()
            else:
                self.unquoted(c)
        self.end_word()
        return self.words_

    def unquoted(self, c: str) -> None:
        at_word_start = self.word is None
        if c in _OPERATORS:
            raise ShellSyntaxError(
                f"uses the shell operator {c!r} outside quotes; no shell runs the command here: "
                "to run several commands, use /bin/bash -c '...' inside the container"
            )
        if c == "`":
            raise ShellSyntaxError("uses a backtick command substitution, which would run on the host")
        if c == "#" and at_word_start:
            raise ShellSyntaxError("has a '#' comment outside quotes; quote it if it is meant literally")
        if c == "~" and at_word_start:
            raise ShellSyntaxError("starts a word with '~', which a host shell would expand; quote it or use a path")
        if c == "$" and self.dollar(_EXPANDS_UNQUOTED):
            return
        self.add(c)
        self.i += 1

    def double_quoted(self) -> None:
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c == '"':
                self.i += 1
                return
            if c == "\\" and self.i + 1 < len(text) and text[self.i + 1] in _DOUBLE_ESCAPES:
                if text[self.i + 1] != "\n":
                    self.add(text[self.i + 1])
                self.i += 2
            elif c == "`":
                raise ShellSyntaxError("uses a backtick command substitution, which would run on the host")
            elif c == "$" and self.dollar(_EXPANDS):
                continue
            else:
                self.add(c)
                self.i += 1
        raise ShellSyntaxError("has an unterminated double quote")

    def dollar(self, expands: re.Pattern[str]) -> bool:
        """Handle a `$` at self.i: True when it was the working directory, False for a literal `$`."""
        text = self.text
        for form in _PWD_FORMS:
            if text.startswith(form, self.i):
                self.add(PWD_MARK)
                self.i += len(form)
                return True
        if _PWD_NAME.match(text, self.i):
            self.add(PWD_MARK)
            self.i += len("$PWD")
            return True
        if expands.match(text, self.i):
            shown = re.match(r"\$(\([^)]*\)?|\{[^}]*\}?|[A-Za-z_][A-Za-z0-9_]*|.)", text[self.i :])
            what = shown.group(0) if shown else "$"
            raise ShellSyntaxError(
                f"uses {what!r}, which a host shell would expand (only $(pwd), $PWD and ${{PWD}}, "
                "the working directory, are understood); put it in single quotes for the container's shell"
            )
        return False
