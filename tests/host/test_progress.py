from __future__ import annotations

import io

from fieldlink_host.progress import Progress


def test_progress_renders_and_is_silent_off_terminal() -> None:
    buf = io.StringIO()
    with Progress("deploy", 200, unit="bytes", stream=buf) as p:
        p.update(50, "fieldlink/x.mpy")
        assert p.render().startswith("deploy [#######---------------------]  25% 50/200 bytes fieldlink/x.mpy")
        p.advance(500)
        assert p.done == 200
    assert buf.getvalue() == ""  # StringIO is not a terminal
    forced = io.StringIO()
    with Progress("build", 2, stream=forced, enabled=True) as p:
        p.advance(2, "done")
    assert "100% 2/2" in forced.getvalue() and forced.getvalue().endswith("\n")
