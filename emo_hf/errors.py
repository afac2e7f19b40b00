"""The one error path of the `emo-hf` command line: any failure becomes one line on stderr and an exit code.

    from emo_hf.errors import report_failure
    try:
        ...
    except Exception as error:
        return report_failure(error, command="train")      # prints one line, returns 2 (bad input) or 1 (ours)

Exit 2: bad input (a path, file, row, flag or setting the user can fix): the message names it and says the fix.
Exit 1: an internal error (a bug of emo_hf or of a library): the line says so and how to get the traceback.
Tracebacks are printed only with `emo-hf --debug ...` or EMO_HF_DEBUG=1. argparse's own errors (unknown flag, bad
value) also come out as one line (OneLineArgumentParser), exit 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from typing import NoReturn

DEBUG_ENV = "EMO_HF_DEBUG"
BAD_INPUT, INTERNAL = 2, 1


def debug_enabled(flag: bool = False) -> bool:
    """`--debug` given, or EMO_HF_DEBUG set to anything but '', '0', 'false', 'no'."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse without the usage block on errors: one line naming the bad argument and where the help is."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(BAD_INPUT)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_message(error: OSError) -> str:
    """An OSError raised by Python or a library (no message of ours): the file, what is wrong, the fix."""
    name = error.filename if error.filename is not None else None
    what = error.strerror or str(error)
    fixes = {
        errno.ENOENT: "check the path (it is resolved from the current folder)",
        errno.EACCES: "check the file's permissions or pick a path this user can read and write",
        errno.EPERM: "check the file's permissions or pick a path this user can read and write",
        errno.EEXIST: "pick a new path or remove the existing one",
        errno.EISDIR: "pass a file, not a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
        errno.ENOSPC: "free some disk space and run the command again",
        errno.EROFS: "pick a path on a writable file system",
    }
    fix = fixes.get(error.errno, "check the path and run the command again")
    if name is None:
        return f"{one_line(str(error))}; {fix}" if not _has_fix(str(error)) else one_line(str(error))
    if error.filename2 is not None:
        name = f"{name} -> {error.filename2}"
    return f"{name}: {what}; {fix}"


def _has_fix(message: str) -> bool:
    """Messages written in emo_hf end with the fix; library messages usually do not (a rough test on the words)."""
    lowered = message.lower()
    return any(word in lowered for word in ("pass ", "pick ", "use ", "rebuild", "run ", "set ", "save ", "remove ",
                                            "delete ", "check ", "edit ", "copy ", "train ", "start ", "rerun",
                                            "install", "lower "))


def classify(error: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached the command line."""
    module = type(error).__module__ or ""
    ours = module.startswith("emo_hf")
    # str(KeyError("x")) is "'x'": the message is its argument
    text = error.args[0] if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str) else str(error)
    message = one_line(text) or type(error).__name__
    if isinstance(error, KeyboardInterrupt):
        return 130, "interrupted (Ctrl-C); a training run continues from its last checkpoint with --resume"
    if isinstance(error, MemoryError):
        return INTERNAL, "out of memory; lower --batch-size or --max-length, or use a machine with more memory"
    if isinstance(error, json.JSONDecodeError):
        where = _file_in_traceback(error, ".json") or "a JSON file"
        return BAD_INPUT, f"{where} is not valid JSON ({message}); regenerate it (or fix it by hand) and run again"
    if isinstance(error, UnicodeDecodeError):
        return BAD_INPUT, (f"a file is not valid {error.encoding} text ({message}); save it as UTF-8 and run the "
                           "command again")
    if _is_network_error(error):
        return BAD_INPUT, (f"a network request failed ({type(error).__name__}: {message}); emo_hf needs no network "
                           "for local paths: pass a local folder/file (models and data named by Hub id need the "
                           "Hub or its cache; HF_HUB_OFFLINE=1 uses the cache only)")
    if type(error).__name__ == "SafetensorError":
        where = _file_in_traceback(error, ".safetensors") or "a .safetensors file"
        return BAD_INPUT, (f"{where} is truncated or not a safetensors file ({message}); copy it again or save the "
                           "model again")
    if isinstance(error, OSError):
        return BAD_INPUT, (message if ours or (error.filename is None and _has_fix(message)) else _os_message(error))
    if isinstance(error, (ValueError, KeyError, TypeError, IndexError, LookupError)) and (ours or _has_fix(message)):
        return BAD_INPUT, message
    if isinstance(error, ValueError):  # a library's refusal of a value we passed on from the user
        return BAD_INPUT, f"{message} (check the arguments; rerun with --debug for where it came from)"
    if ours and isinstance(error, RuntimeError):  # NonFiniteLossError, HubAuthError, ...: raised on purpose
        return BAD_INPUT, message
    return INTERNAL, (f"internal error {type(error).__name__}: {message}. This is a bug of emo_hf or a library: "
                      f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback and report it")


def _file_in_traceback(error: BaseException, suffix: str) -> str | None:
    """The file a parser failed on, for parsers whose errors do not say (json, safetensors): the innermost frame's
    local path ending in `suffix` that exists. A fallback only: emo_hf's own readers name their files themselves."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, (str, os.PathLike)) and str(value).endswith(suffix) and os.path.isfile(value):
                return str(value)
    return None


def _is_network_error(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    modules = {cls.__module__.split(".")[0] for cls in type(error).__mro__}
    return bool(names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError", "ConnectTimeout",
                         "ReadTimeout", "ConnectionError"}) or (("httpx" in modules or "requests" in modules)
                                                                 and "HTTPError" not in names)


def report_failure(error: BaseException, *, command: str | None, debug: bool = False) -> int:
    """Print the one line (and the traceback in debug mode) for `error`; return the exit code."""
    if debug_enabled(debug):
        traceback.print_exception(error)
    code, message = classify(error)
    prefix = f"emo-hf {command}" if command else "emo-hf"
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return code
