"""``python -m bitwrk.seller``'s own flags: a bad value is a usage error before anything
starts (no daemon, no worker, no bid)."""

from __future__ import annotations

import pytest

from bitwrk.seller.__main__ import main


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_a_bad_spare_after_is_a_usage_error(value: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--exchange", "http://127.0.0.1:9", "--min-price", "10", "--spare-after", value])
    assert exit_.value.code == 2
    assert "--spare-after" in capsys.readouterr().err
