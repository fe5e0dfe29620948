"""Messages in one line: the CLI prints every error a user can fix as one line.

torch's and ONNX Runtime's exceptions run to many lines (stack notes, C++
frames); lwprof quotes their first line.
"""

from __future__ import annotations


def first_line(text: object) -> str:
    """The first non-empty line of ``text``, stripped ("" when there is none);
    a line that only introduces the next (ends in a colon, as torch.compile's
    ``backend='inductor' raised:``) is joined with it."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def one_line(exc: BaseException) -> str:
    """An exception's message in one line, or its type's name when it has none."""
    return first_line(exc) or type(exc).__name__


def with_article(noun: str) -> str:
    """'a tensor', 'an nn.Module'."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
