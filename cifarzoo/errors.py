"""Exceptions that carry a one-line, user-facing message.

Anything raised as :class:`CifarzooError` is a user mistake or an environment problem (a bad file, a missing
download, an unknown name). The CLI prints ``error: <message>`` and exits non-zero without a traceback;
``CIFARZOO_DEBUG=1`` shows the traceback. Any other exception is a bug and always shows its traceback.
"""

from __future__ import annotations

import os


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (newlines, tabs, other control characters, Unicode
    line separators) written as its escape, ``\\n``: messages quote file names and parsers' complaints about
    file contents, which a malformed file can fill with line breaks."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class CifarzooError(Exception):
    """A user-facing error: the message alone must say what went wrong and, where it can, what to do. It is always
    one line (:func:`one_line`), whatever the text it quotes."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(CifarzooError, ValueError):
    """An invalid model config (``config.json``) or option."""


class CheckpointError(CifarzooError):
    """A checkpoint directory that is missing files or does not match its config."""


class UnknownModelError(CifarzooError, KeyError):
    """A model name that is neither a zoo entry, an architecture nor an existing directory."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class UntrustedCodeError(CifarzooError):
    """A code-bearing file (TorchScript, pickle) that would run code as it loads, without the user's opt-in."""


class NoWeightsError(CifarzooError):
    """A zoo entry that has no released weights yet."""


class ImageReadError(CifarzooError):
    """One image file that cannot be decoded. ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = one_line(reason)


def display_path(path: object) -> str:
    """A path as printable text: file names that are not valid UTF-8 show their bytes as escapes."""
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return str(path)
