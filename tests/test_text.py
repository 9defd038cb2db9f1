import io

from rich.console import Console
from rich.table import Table

from pipeline.text import plain, safe


def test_control_characters_and_markup_are_shown_not_obeyed():
    name = "[bold red]car[/] \x1b[31mred\x1b]0;title\x07"
    assert plain(name) == "[bold red]car[/] \\x1b[31mred\\x1b]0;title\\x07"
    out = io.StringIO()
    table = Table(title=safe(name))
    table.add_column("class")
    table.add_row(safe(name))
    Console(file=out, width=200, color_system=None).print(table)
    text = out.getvalue()
    assert text.count("[bold red]car[/]") == 2 and "\x1b" not in text and "\x07" not in text
    assert plain("one\nrtpipe: all good\tx") == "one\\x0artpipe: all good\\x09x"  # no forged second line
    assert plain("abc\u202edcba") == "abc\\u202edcba"
