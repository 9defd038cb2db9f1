"""Text that came from files, models or the network, made safe to print.

Class names, file names, URLs and metadata strings can hold terminal escape sequences (which
recolour, retitle or rewrite the terminal) or rich markup (``[bold red]``, ``[link=...]``) that
the tables would render: ``plain`` shows control characters as ``\\xNN``; ``safe`` also
escapes markup, for text that goes into a rich table or console line.
"""

from __future__ import annotations

import re

# control characters (newlines and tabs too: a message is one line) and the bidirectional
# overrides that make text read other than it is stored
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(text: object) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(text))


def safe(text: object) -> str:
    from rich.markup import escape

    return escape(plain(text))
