"""ConsoleCompleter: context-aware completion for the console (commands, options, job ids, site
names, paths, choices), read from the command registry and a ConsoleCache; never the server."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from flshell.console.cache import ACTIVE, FINAL, ConsoleCache

_QUOTES = "'\""
_SHELL_SPECIAL = set(" \t'\"\\;#")


@dataclass
class Words:
    """The command being typed: the words before the cursor's word, and the cursor's word
    (`current`, unquoted) with where its raw text starts in the line."""

    before: list[str] = field(default_factory=list)
    current: str = ""
    start: int = 0  # index in text_before_cursor where the current word begins
    quote: str = ""  # the quote the current word is inside, if any
    in_comment: bool = False


def split_words(text: str) -> Words:
    """Split the text before the cursor as the script runner's shlex does (quotes, `;` between
    commands, `#` comments), keeping the unfinished last word. Only the last command counts."""
    words = Words()
    word: list[str] | None = None  # None: between words
    quote = ""
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            word.append(ch)  # type: ignore[union-attr]
            escaped = False
            continue
        if ch == "\\" and quote != "'":
            if word is None:
                word, words.start = [], i
            escaped = True
            continue
        if quote:
            if ch == quote:
                quote = ""
            else:
                word.append(ch)  # type: ignore[union-attr]
            continue
        if ch in " \t":
            if word is not None:
                words.before.append("".join(word))
                word = None
        elif ch == ";":
            words.before, word = [], None
        elif ch == "#" and word is None:
            return Words(in_comment=True)
        else:
            if word is None:
                word, words.start = [], i
            if ch in _QUOTES:
                quote = ch
            else:
                word.append(ch)
    words.current = "".join(word) if word is not None else ""
    if word is None:
        words.start = len(text)
    words.quote = quote
    return words


@dataclass
class Context:
    """What the cursor's word is: a command name, an option flag, or the value of `action`
    (a positional or an option's argument) of `command`."""

    kind: str  # "command" | "option" | "value" | "none"
    command: Any = None
    action: argparse.Action | None = None
    used: set[str] = field(default_factory=set)  # dests of options already given
    also_options: bool = False  # an empty word where options fit too


def classify(words: Words, registry: Mapping[str, Any]) -> Context:
    """Which kind of thing the cursor's word is, from the command's argparse parser."""
    if words.in_comment:
        return Context("none")
    if not words.before:
        return Context("command")
    command = registry.get(words.before[0])
    if command is None:
        return Context("none")
    actions = list(command.parser._actions)
    options = {flag: a for a in actions for flag in a.option_strings}
    positionals = [a for a in actions if not a.option_strings]
    used: set[str] = set()
    expecting: argparse.Action | None = None
    pos_index, pos_count = 0, 0
    for word in words.before[1:]:
        if expecting is not None:
            expecting = None
            continue
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            flag, _, value = word.partition("=")
            action = options.get(flag)
            if action is not None:
                used.add(action.dest)
                if _takes_value(action) and not value:
                    expecting = action
            continue
        if pos_index < len(positionals):  # one more positional value
            pos_count += 1
            nargs = positionals[pos_index].nargs
            if nargs in (None, "?") or (isinstance(nargs, int) and pos_count >= nargs):
                pos_index, pos_count = pos_index + 1, 0
    if expecting is not None:
        return Context("value", command, expecting, used)
    if words.current.startswith("-") and not words.quote:
        return Context("option", command, used=used)
    if pos_index < len(positionals):
        action = positionals[pos_index]
        optional = action.nargs in ("?", "*") or pos_count > 0
        return Context("value", command, action, used, also_options=optional and not words.current)
    return Context("option", command, used=used) if not words.current else Context("none")


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


class ConsoleCompleter(Completer):
    """Completes a console line from the command registry (name, help, argparse parser and
    `completions` hints: arg dest -> "job" | "job:active" | "job:done" | "site" | "path" |
    "command" | "choices:a,b") and a ConsoleCache. `last_job` returns what `last` names now."""

    def __init__(self, registry: Mapping[str, Any], cache: ConsoleCache,
                 last_job: Callable[[], str | None] | None = None) -> None:
        self.registry = registry
        self.cache = cache
        self.last_job = last_job or (lambda: None)
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = split_words(text)
        context = classify(words, self.registry)
        start = -(len(text) - words.start)
        if context.kind == "command":
            yield from self._commands(words.current, start)
        elif context.kind == "option":
            yield from self._options(context, words.current, start)
        elif context.kind == "value":
            assert context.action is not None
            hint = (getattr(context.command, "completions", None) or {}).get(context.action.dest)
            if hint is None and context.action.choices:
                hint = "choices:" + ",".join(map(str, context.action.choices))
            yield from self._values(hint, words, start, complete_event)
            if context.also_options:
                yield from self._options(context, "", start)

    # ---- the kinds of candidate ----------------------------------------------------------

    def _commands(self, word: str, start: int) -> Iterable[Completion]:
        names = sorted(self.registry)
        prefix = [n for n in names if n.startswith(word)]
        inside = [n for n in names if word and word in n and n not in prefix]  # "job" -> list_jobs
        for name in prefix + inside:
            yield Completion(name, start, display_meta=_one_line(self.registry[name].help))

    def _options(self, context: Context, word: str, start: int) -> Iterable[Completion]:
        parser = context.command.parser
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if action.dest in context.used and not isinstance(action, (argparse._AppendAction,
                                                                       argparse._CountAction)):
                continue
            matching = [f for f in action.option_strings if f.startswith(word)]
            if matching:
                flag = max(matching, key=len)
                meta = _help_text(action, parser)
                yield Completion(flag, start, display=", ".join(action.option_strings), display_meta=meta)

    def _values(self, hint: str | None, words: Words, start: int,
                event: CompleteEvent) -> Iterable[Completion]:
        word = words.current
        if hint is None:
            return
        kind, _, arg = hint.partition(":")
        if kind == "job":
            yield from self._jobs(word, start, arg)
        elif kind == "site":
            for site in self.cache.sites():
                if site["name"].startswith(word):
                    yield Completion(_quoted(site["name"]), start, display_meta=str(site.get("status", "")))
        elif kind == "command":
            yield from self._commands(word, start)
        elif kind == "choices":
            for choice in arg.split(","):
                if choice.startswith(word):
                    yield Completion(choice, start)
        elif kind in ("path", "dir"):
            yield from self._paths(words, start, event, only_dirs=kind == "dir")

    def _jobs(self, word: str, start: int, which: str = "") -> Iterable[Completion]:
        low = word.lower()
        last = self.last_job()
        if last is not None and "last".startswith(low):
            yield Completion("last", start, display_meta=f"the job submitted last: {last[:8]}")
        jobs = self.cache.jobs()
        if which == "active":
            jobs = [j for j in jobs if j.get("status") in ACTIVE]
        elif which == "done":
            jobs = [j for j in jobs if j.get("status") in FINAL]
        by_id = [j for j in jobs if j["job_id"].lower().startswith(low)]
        matched = {j["job_id"] for j in by_id}
        by_name = [j for j in jobs if low and j["job_id"] not in matched
                   and str(j.get("name") or "").lower().startswith(low)]
        shown = by_id + by_name
        width = max((len(str(j.get("name") or "")) for j in shown), default=0)
        ids = [j["job_id"] for j in jobs]
        for job in shown:
            text = _unique_prefix(job["job_id"], ids)
            display = f"{job['job_id'][:8]}  {str(job.get('name') or ''):<{width}}  {job.get('status', '')}"
            yield Completion(text, start, display=display, display_meta=_job_meta(job))

    def _paths(self, words: Words, start: int, event: CompleteEvent, only_dirs: bool) -> Iterable[Completion]:
        self.paths.only_directories = only_dirs
        word = words.current
        for c in self.paths.get_completions(Document(word, len(word)), event):
            full = word + c.text
            if c.display_text.endswith("/") and not full.endswith("/"):
                full += "/"  # PathCompleter leaves it out; with it the next Tab lists the folder
            if words.quote or any(ch in _SHELL_SPECIAL for ch in full):
                yield Completion(_quoted(full), start, display=c.display, display_meta=c.display_meta)
            else:
                yield Completion(full, start, display=c.display, display_meta=c.display_meta)


def _unique_prefix(job_id: str, ids: list[str], minimum: int = 8) -> str:
    """The shortest prefix of `job_id` (at least `minimum` long) that no other id starts with."""
    others = [i for i in ids if i != job_id]
    for n in range(minimum, len(job_id)):
        if not any(o.startswith(job_id[:n]) for o in others):
            return job_id[:n]
    return job_id


def _job_meta(job: dict[str, Any]) -> str:
    total, current = job.get("total_rounds"), job.get("current_round")
    if job.get("status") == "RUNNING" and total and current is not None:
        return f"round {current + 1}/{total}"  # current_round counts from 0
    return _one_line(str(job.get("reason") or ""))[:60]


def _quoted(text: str) -> str:
    if not text or any(ch in _SHELL_SPECIAL for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _help_text(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%(" in text:
        try:
            text = text % {**vars(action), "prog": parser.prog}
        except (KeyError, TypeError, ValueError):
            pass
    return _one_line(text)

