import pytest

from psr.core.stats import wilson


def test_wilson_matches_the_textbook_values():
    # Wilson 95% for 151/300 (the judge-learnability result quoted in the README): 44.7-56.0
    lo, hi = wilson(151, 300)
    assert lo == pytest.approx(44.71, abs=0.01) and hi == pytest.approx(55.95, abs=0.01)
    # 0 of 10 still has a non-zero upper bound (the normal approximation would give 0-0)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(27.75, abs=0.01)


def test_wilson_is_symmetric_and_narrows_with_n():
    lo, hi = wilson(30, 100)
    lo2, hi2 = wilson(70, 100)
    assert lo == pytest.approx(100 - hi2) and hi == pytest.approx(100 - lo2)
    assert wilson(300, 1000)[1] - wilson(300, 1000)[0] < hi - lo
    assert wilson(0, 0) == (0.0, 100.0)
