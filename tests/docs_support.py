"""Reading the documentation's examples, and comparing what they show with what the
service answers: the helpers of tests/test_docs_examples.py, whose docstring states the
convention they implement."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from tests.support import ROOT

ANY = "\0any"
"""A value written `...` in the docs: any value (in a list, last: any further items)."""
MORE = "\0more"
"""A member written `...` in the docs: the object may have members not shown."""

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n?", re.M | re.S)
STATUS = re.compile(r"^# (\d{3})\b(.*)$")
TITLE = re.compile(r'^ (?P<title>[A-Z][^:,(]*?)(?: \([^)]*\))?(?::(?: "(?P<detail>.*)")?|,|$)')
HEADER = re.compile(r"\bwith ([A-Z][A-Za-z]*(?:-[A-Z][A-Za-z]*)+)")
LATER = "a moment later"
SPELLING = ".venv/bin/redact"
OTHER_SPELLING = re.compile(r"(?:^|\$\(|&&\s*|\|\s*|;\s*)redact\s")


@dataclasses.dataclass
class Example:
    """One command of a page and what the page says it answers or prints."""

    line: int
    command: str
    status: str | None = None
    answer: str | None = None  # JSON (with `...`) or lines of text
    title: str | None = None  # a problem's title, and its detail
    detail: str | None = None
    headers: tuple[str, ...] = ()
    later: bool = False  # "a moment later": asked again until it answers as shown

    def where(self, page: str) -> str:
        return f"{page}:{self.line}: {self.command}"


def blocks(page: str, text: str | None = None) -> list[tuple[str, str, int, str]]:
    """The page's fenced blocks (of `text`, if given, as the page): (language, text,
    first line, what follows the block up to the next one)."""
    text = (ROOT / page).read_text() if text is None else text
    found = list(FENCE.finditer(text))
    return [
        (
            match.group(1),
            match.group(2),
            text.count("\n", 0, match.start()) + 2,
            text[match.end() : found[n + 1].start() if n + 1 < len(found) else len(text)],
        )
        for n, match in enumerate(found)
    ]


def examples(page: str) -> list[Example]:
    """Each command of the page's sh blocks, in order, with what the page shows of its
    answer: the `# NNN ...` comment above it, `# ` lines right below a command other than
    curl, and a ```json or ``` block right after the sh block (its last command's)."""
    found: list[Example] = []
    shown = blocks(page)
    for n, (language, block, first, after) in enumerate(shown):
        if language != "sh":
            continue
        mine = _commands(block, first)
        if n + 1 < len(shown) and not after.strip() and shown[n + 1][0] in ("json", ""):
            assert mine and mine[-1].answer is None, f"{page}:{shown[n + 1][2]}: two answers"
            mine[-1].answer = shown[n + 1][1]
        found.extend(mine)
    return found


def _commands(block: str, first: int) -> list[Example]:
    found: list[Example] = []
    pending = Example(0, "")
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        status = STATUS.match(line)
        if status:
            pending = _expectation(status.group(1), status.group(2))
        elif line.startswith("#") and LATER in line:
            pending.later = True
        if not line.strip() or line.startswith("#"):
            continue
        command, start = line, i - 1
        while command.endswith("\\") or _quote_open(command):
            command += "\n" + lines[i]  # as bash reads it: the line goes on
            i += 1
        if "curl " in command:  # a status comment names the next curl's answer
            example = dataclasses.replace(pending, line=first + start, command=command)
            pending = Example(0, "")
        else:
            example = Example(first + start, command)
        output = []
        while not command.startswith("curl ") and i < len(lines):
            if not lines[i].startswith("# ") or STATUS.match(lines[i]):
                break
            output.append(lines[i][2:])  # printed: a comment right below the command
            i += 1
        if output:
            example.answer = "\n".join(output)
        found.append(example)
    assert pending.status is None, f"line {first + len(lines)}: a status with no curl below it"
    return found


def _quote_open(command: str) -> bool:
    """Whether a quoted string is still open at the end of `command`, as bash reads it (a
    `#` starting a word outside quotes starts a comment)."""
    quote = None
    for n, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (n == 0 or command[n - 1].isspace()):
            return False
    return quote is not None


def _expectation(status: str, rest: str) -> Example:
    expected = Example(0, "", status=status, later=LATER in rest)
    expected.headers = tuple(HEADER.findall(rest))
    if rest.startswith((" {", " [")):
        expected.answer = rest[1 : 1 + _json_length(rest[1:])]
    else:
        title = TITLE.match(rest)
        if title:
            expected.title, expected.detail = title.group("title"), title.group("detail")
    return expected


def _json_length(text: str) -> int:
    """The length of the JSON value `text` starts with (its brackets balanced)."""
    depth, quoted, escaped = 0, False, False
    for n, char in enumerate(text):
        if quoted:
            quoted = not (char == '"' and not escaped)
            escaped = char == "\\" and not escaped
        elif char == '"':
            quoted = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return n + 1
    raise AssertionError(f"unbalanced JSON: {text}")


def loose_json(text: str) -> Any:
    """The docs' JSON, where `...` stands for a value or for members not shown."""
    out, stack, quoted, escaped, i = [], [], False, False, 0
    while i < len(text):
        char = text[i]
        if quoted:
            quoted = not (char == '"' and not escaped)
            escaped = char == "\\" and not escaped
        elif text.startswith("...", i):
            before = "".join(out).rstrip()[-1:]
            member = stack[-1:] == ["{"] and before in ("{", ",")
            out.append(f'"{MORE}": 0' if member else f'"{ANY}"')
            i += 3
            continue
        elif char == '"':
            quoted = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]":
            stack.pop()
        out.append(char)
        i += 1
    return json.loads("".join(out).replace("\0", "\\u0000"))


def differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Where `actual` differs from what the docs show (`expected`, read by loose_json)."""
    if expected == ANY:
        return []
    if isinstance(expected, str) and "..." in expected:
        pattern = ".*".join(map(re.escape, expected.split("...")))
        if isinstance(actual, str) and re.fullmatch(pattern, actual, re.S):
            return []
        return [f"{path}: {actual!r} is not {expected!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{path}.{key}: missing" for key in expected if key != MORE and key not in actual]
        if MORE not in expected:
            found += [
                f"{path}.{key}: not shown in the docs" for key in actual if key not in expected
            ]
        for key in expected.keys() & actual.keys():
            found += differences(expected[key], actual[key], f"{path}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        more = bool(expected) and expected[-1] == ANY
        items = expected[:-1] if more else expected
        if len(actual) < len(items) or (not more and len(actual) != len(items)):
            return [f"{path}: {len(actual)} items, the docs show {len(expected)}"]
        return [d for n, e in enumerate(items) for d in differences(e, actual[n], f"{path}[{n}]")]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{path}: {actual!r} is not {expected!r}"]
    return []


def compare(shown: str, printed: str) -> list[str]:
    """How `printed` differs from what the docs show: JSON structurally, text line by
    line (`...` standing for any text)."""
    if shown.lstrip().startswith(("{", "[")):
        try:
            actual = json.loads(printed)
        except ValueError:
            return [f"not JSON: {printed[:300]!r}"]
        return differences(loose_json(shown), actual)
    want, got = shown.strip("\n").splitlines(), printed.strip("\n").splitlines()
    if len(want) == len(got) and not [
        d for w, g in zip(want, got, strict=True) for d in differences(w, g)
    ]:
        return []
    return [f"printed {got!r}, the docs show {want!r}"]


def other_spelling(page: str, text: str | None = None) -> list[str]:
    """Lines of the page's code blocks (`text`, if given) that start the command as
    `redact`, not `.venv/bin/redact`."""
    return [
        f"{page}:{first + n}: {line}"
        for language, block, first, _ in blocks(page, text)
        if language in ("sh", "")
        for n, line in enumerate(block.splitlines())
        if not line.lstrip().startswith("#") and OTHER_SPELLING.search(line.strip())
    ]
