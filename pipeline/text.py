"""Text that came from files, models or the network, made safe to print.

Class names, file names, URLs and metadata strings can hold terminal escape sequences (which
recolour, retitle or rewrite the terminal) or rich markup (``[bold red]``, ``[link=...]``) that
the tables would render: ``plain`` shows control characters as ``\\xNN``; ``safe`` also
escapes markup, for text that goes into a rich table or console line.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: object) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def safe(text: object) -> str:
    from rich.markup import escape

    return escape(plain(text))
