"""Every rule of an organisation matched in one pass over the text, in time
linear in the text whatever the patterns.

Patterns run on RE2 (no backtracking: a pattern like `(a+)+$` cannot stall
the server), all of them in one `re2.Set`: one scan says which rules match,
however many rules there are. Only the rules that matched are then searched
on their own, for where (a finding's span)."""

from __future__ import annotations

import logging
from typing import cast

import re2

log = logging.getLogger(__name__)

# Memory RE2 may use for one compiled rule (its default): a pattern whose
# program needs more (`(x{1000}){1000}`) is refused as too large.
RULE_MAX_MEM = 8 << 20
# Memory for one set's program and the DFA it builds as it scans. A set whose
# DFA runs out fails its scan; then its rules are searched one by one (each
# still linear, on RE2's NFA), so a hostile pattern costs speed, never a miss.
SET_MAX_MEM = 64 << 20
# Rules per set: bounds one set's program, so the DFA's states stay small.
SET_SIZE = 2_000
# A character that does not make a word, as Python's `\b` sees words.
_NOT_WORD = r"[^\pL\pN_]"


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = max_mem
    options.log_errors = False  # a refused pattern is the caller's answer, not a log line
    return options


_RULE_OPTIONS = _options(RULE_MAX_MEM)
_SET_OPTIONS = _options(SET_MAX_MEM)


def regex_error(pattern: str) -> str | None:
    """Why RE2 cannot take this regular expression, or None if it can."""
    try:
        re2.compile(pattern, _RULE_OPTIONS)
    except re2.error as error:
        detail = error.args[0] if error.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return str(detail) or "it does not compile"
    return None


def literal(text: str) -> str:
    """A pattern that matches the text as it is."""
    return str(re2.escape(text))


def keywords(words: tuple[str, ...]) -> tuple[str, str]:
    """Two patterns for any of the words: the words alone, for the set (small:
    Unicode word classes are large programs, ten thousand of them too large for
    one set), and each as a whole word, to confirm a candidate (a word
    character at either end of a keyword must not touch another one, as
    Python's `\\b` sees words; RE2's `\\b` is ASCII only)."""
    stripped = [w.strip() for w in words if w.strip()] or ["\x00"]  # no words (never stored): matches nothing real
    alternatives = []
    for word in stripped:
        before = f"(?:^|{_NOT_WORD})" if _is_word(word[0]) else ""
        after = f"(?:$|{_NOT_WORD})" if _is_word(word[-1]) else ""
        alternatives.append(f"{before}({literal(word)}){after}")
    return "|".join(literal(w) for w in stripped), "|".join(alternatives)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


class Pattern:
    """One rule's pattern: what the set scans for, and, for a keyword rule,
    the exact pattern that confirms a candidate and gives its span."""

    __slots__ = ("_regex", "confirm", "exact", "scan")

    def __init__(self, scan: str, exact: str | None = None) -> None:
        self.scan = scan
        self.exact = exact or scan
        # A keyword pattern captures the keyword itself: its span leaves out
        # the character that bounds the word, and the set only finds candidates.
        self.confirm = exact is not None
        self._regex: re2._Regexp[bytes] | None = None  # compiled when first needed: most rules never match

    def span(self, data: bytes) -> tuple[int, int] | None:
        """Where the pattern first matches, in bytes of the UTF-8 text."""
        if self._regex is None:
            self._regex = re2.compile(self.exact.encode(), _RULE_OPTIONS)
        match = self._regex.search(data)
        if match is None:
            return None
        if self.confirm:
            for group in range(1, self._regex.groups + 1):
                start, end = match.span(group)
                if start >= 0:
                    return start, end
        return match.span()


class Matches:
    """The patterns that matched one text, and where each of them does."""

    __slots__ = ("_ascii", "_data", "_patterns", "indices")

    def __init__(self, patterns: list[Pattern], data: bytes, ascii_only: bool, indices: set[int]) -> None:
        self._patterns = patterns
        self._data = data
        self._ascii = ascii_only
        self.indices = indices

    def span(self, index: int) -> tuple[int, int] | None:
        """Where pattern `index` first matches, in characters of the text."""
        found = self._patterns[index].span(self._data)
        if found is None or self._ascii:
            return found
        start = len(self._data[: found[0]].decode("utf-8", "surrogatepass"))
        return start, start + len(self._data[found[0] : found[1]].decode("utf-8", "surrogatepass"))


class RuleMatcher:
    """Patterns matched all at once. A pattern RE2 refuses (stored before
    patterns had to suit it) never matches, and is listed in `refused`."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self._patterns = patterns
        self.refused: set[int] = set()
        # Each set with the pattern index of each of its entries (entry 0: the sentinel).
        self._sets: list[tuple[re2.Set | None, list[int]]] = []
        for first in range(0, len(patterns), SET_SIZE):
            self._sets.append(self._compile_set(range(first, min(first + SET_SIZE, len(patterns)))))

    def __len__(self) -> int:
        return len(self._patterns)

    def matching(self, text: str) -> Matches:
        """The patterns that match somewhere in the text. The text is encoded
        once, for every set and every span (RE2 reads UTF-8)."""
        data = text.encode("utf-8", "surrogatepass")
        candidates: set[int] = set()
        for compiled, indices in self._sets:
            # The stubs say bool; RE2::Set answers the list of entries that matched.
            hits = cast("list[int] | None", compiled.Match(data)) if compiled is not None else None
            # Entry 0 is the empty pattern, which always matches: without it in
            # the answer, the scan failed (its DFA ran out of memory) and says
            # nothing; then each rule is searched on its own (still linear).
            if hits is not None and 0 in hits:
                candidates.update(indices[hit] for hit in hits if hit)
            else:
                candidates.update(i for i in indices[1:] if self._patterns[i].span(data) is not None)
        patterns = self._patterns
        found = {i for i in candidates if not patterns[i].confirm or patterns[i].span(data) is not None}
        return Matches(patterns, data, len(data) == len(text), found)

    def _compile_set(self, indices: range) -> tuple[re2.Set | None, list[int]]:
        compiled = re2.Set.SearchSet(_SET_OPTIONS)
        compiled.Add("")  # the sentinel: see `matching`
        entries = [-1]
        for index in indices:
            try:
                compiled.Add(self._patterns[index].scan.encode())
            except re2.error:
                self.refused.add(index)
                continue
            entries.append(index)
        try:
            compiled.Compile()
        except re2.error:
            # Too large as one program: these rules are searched one by one.
            log.warning("a set of firewall rules is too large to compile together; matching them one by one")
            return None, entries
        return compiled, entries
