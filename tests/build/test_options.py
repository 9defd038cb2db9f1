"""Build options: the --batch MIN:OPT:MAX range."""

import pytest

from pipeline.build.options import Batch


def test_batch_option_parsing():
    assert Batch.parse("4") == Batch(4, 4, 4) and Batch.parse("4").fixed and Batch.parse("4").check_sizes() == [4]
    b = Batch.parse("1:4:8")
    assert (b.fixed, str(b), b.label(), b.check_sizes()) == (False, "1:4:8", "1-4-8", [1, 8])
    for bad in ("0", "8:4:1", "1:2", "x", "2000"):
        with pytest.raises(ValueError, match="batch"):
            Batch.parse(bad)
