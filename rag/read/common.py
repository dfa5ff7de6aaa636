"""What the readers of each file type share: their result's shape, junk titles, short reasons."""

from __future__ import annotations

import re

# (original text, title or "", page starts) from a file's bytes.
Extracted = tuple[str, str, tuple[int, ...]]

# Metadata titles that name the file or the program rather than the document.
JUNK_TITLE = re.compile(
    r"microsoft (?:word|powerpoint) - |untitled\b"
    r"|.*\.(?:docx?|pdf|txt|rtf|odt|pptx?|indd|tex|dvi)$",
    re.IGNORECASE,
)


def reason(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return message if len(message) <= 100 else message[:99] + "\u2026"
