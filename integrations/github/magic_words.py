"""MIMRAI's "magic words": `fixes ABC-12` in a pull request's title or body moves task ABC-12.

Close words move the task to done once the pull request is merged; before that, and for
progress words, the task goes to review when the pull request is under review, else to
in progress. Unlike MIMRAI, the task prefix is part of the result (ABC-12, not just 12).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from schemas.events import TaskStatusTarget

CLOSE_WORDS = ("close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved")
PROGRESS_WORDS = (
    "address", "addresses", "addressed", "implement", "implements", "implemented", "refs", "references",
    "refers", "wip", "works-on", "working-on", "progress", "starts", "start",
)  # fmt: skip
REVIEW_STATUSES = ("review_requested", "reviewed", "changes_requested", "approved")

# MIMRAI's pattern, case-insensitive: \b(<word>)\b\s+([A-Z][A-Z0-9]{1,10})-(\d+). Trying its 24-way
# alternation at every position is slow, and so is trying even the task reference alone at every
# position. A reference needs "-<digit>", which is rare and found with a literal search; each one
# is then checked backwards: its prefix starts right after whitespace, at most 11 characters back.
MIMRAI_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(w) for w in (*CLOSE_WORDS, *PROGRESS_WORDS)) + r")\b\s+([A-Z][A-Z0-9]{1,10})-(\d+)",
    re.IGNORECASE,
)
_DASH_DIGIT = re.compile(r"-\d")
_REFERENCE_AT = re.compile(r"([A-Z][A-Z0-9]{1,10})-(\d+)", re.IGNORECASE)
_LONGEST_PREFIX = 11
_WORDS = frozenset(w.casefold() for w in (*CLOSE_WORDS, *PROGRESS_WORDS))


def _is_word_char(char: str) -> bool:  # what re's \w matches
    return char.isalnum() or char == "_"


@dataclass(frozen=True)
class MagicAction:
    prefix: str
    sequence: int
    magic_word: str
    status: TaskStatusTarget

    @property
    def task_ref(self) -> str:
        return f"{self.prefix}-{self.sequence}"

    @property
    def key(self) -> str:
        return f"{self.task_ref}:{self.status}"


@functools.lru_cache(maxsize=256)  # a pull request's title and body: 256 of them hold 16 MB at most
def _matches(text: str) -> tuple[tuple[str, str, int], ...]:
    """(magic word, PREFIX, sequence) in order, exactly as MIMRAI_PATTERN.finditer finds them.
    Remembered per text: a pull request is pushed to many times with the same title and body."""
    found = []
    floor = 0  # finditer does not overlap matches: a word must start after the previous match
    for dash in _DASH_DIGIT.finditer(text):
        ref = _reference_ending_at(text, dash.start())
        if ref is None or ref.start() < floor:
            continue
        word = _word_before(text, floor, ref.start())
        if word is not None:
            found.append((word, ref.group(1).upper(), int(ref.group(2))))
            floor = ref.end()
    return tuple(found)


def _reference_ending_at(text: str, dash: int) -> re.Match[str] | None:
    """The task reference whose "-" is at `dash`, if one starts right after whitespace."""
    start = dash
    while start > 0 and dash - start <= _LONGEST_PREFIX and not text[start - 1].isspace():
        start -= 1
    if start == 0 or not text[start - 1].isspace() or dash - start < 2:
        return None
    ref = _REFERENCE_AT.match(text, start)
    if ref is None or ref.end(1) != dash:
        return None
    return ref


def _word_before(text: str, floor: int, start: int) -> str | None:
    """The magic word ending right before the whitespace in front of `start`, if there is one:
    a whole word (\\b on both sides) at or after `floor`."""
    end = start
    while end > floor and text[end - 1].isspace():
        end -= 1
    if end == start:
        return None
    run = end
    while run > floor and (_is_word_char(text[run - 1]) or text[run - 1] == "-"):
        run -= 1
    for begin in range(run, end):  # leftmost first, as the regex scan would find it
        if begin > run and text[begin - 1] != "-":
            continue
        if begin > 0 and _is_word_char(text[begin - 1]):
            continue
        if text[begin:end].casefold() in _WORDS:
            return text[begin:end]
    return None


def _status(word: str, *, merged: bool, review_status: str, has_reviewers: bool) -> TaskStatusTarget:
    if word.lower() in CLOSE_WORDS and merged:
        return "done"
    if review_status in REVIEW_STATUSES or has_reviewers:
        return "review"
    return "in_progress"


def extract(
    title: str, body: str | None, *, merged: bool, review_status: str, has_reviewers: bool
) -> list[MagicAction]:
    text = f"{title}\n{body or ''}"
    actions: list[MagicAction] = []
    seen: set[str] = set()
    for word, prefix, sequence in _matches(text):
        action = MagicAction(
            prefix,
            sequence,
            word,
            _status(word, merged=merged, review_status=review_status, has_reviewers=has_reviewers),
        )
        if action.key not in seen:  # the same task named twice moves once
            seen.add(action.key)
            actions.append(action)
    return actions
