"""The rating-time features of models/time_features.py on a hand-made history."""

import numpy as np
import pytest

from models import time_features as tf

DAY = 86_400


def _side():
    # user 1 rated at days 0, 1, 1 (+1 h), 10; user 2 once at day 5; user 3 never (index 3 exists, no ratings)
    ui = np.array([1, 1, 1, 1, 2])
    times = np.array([0, DAY, DAY + 3600, 10 * DAY, 5 * DAY]) + 1_000_000
    return ui, times, tf.fit_times(ui, times, 4, np.array([2.0, 1, 0, -1, -2]))


def test_training_ratings_leave_themselves_out():
    ui, times, side = _side()
    f = tf.pair_features(side, ui, times, own=np.array([2.0, 1, 0, -1, -2]))   # [5, 13]
    assert f.shape == (5, tf.WIDTH) and f.dtype == np.float32
    np.testing.assert_allclose(f[:4, 0], np.array([0, 1, 2, 3]) / 3 - 0.5, atol=1e-6)   # among the 3 others
    np.testing.assert_allclose(f[:4, 2] * 3, np.log1p(np.array([24, 1, 1, 9 * 24 - 1])), atol=1e-5)
    np.testing.assert_allclose(f[:4, 1] * 3, np.log1p(np.array([0, 1, 1 + 1 / 24, 10])), atol=1e-5)
    # values 2, 1, 0, -1 (user 1) and -2 (user 2): user 1's day-1 ratings see each other, not day 0 or 10
    day = 4 + 2 * tf.WINDOWS.index(86_400)
    np.testing.assert_allclose(f[1:3, day], [0 / 6, 1 / 6], atol=1e-6)             # the other's value / (1 + 5)
    np.testing.assert_allclose(f[1:3, day + 1] * 3, np.log1p([1, 1]), atol=1e-6)
    assert (f[:, 4:day] == 0).all()                                                # nothing within 10 minutes
    np.testing.assert_allclose(f[:4, -1], [0 / 8, 1 / 8, 2 / 8, 3 / 8], atol=1e-6)   # the other three's, / (3 + 5)
    assert (f[4, :3] == 0).all() and (f[4, 4:] == 0).all()   # user 2's one rating: nothing else of theirs
    np.testing.assert_allclose(f[:, 3] * 365, (times - times.min()) / DAY, atol=1e-4)


def test_held_out_times_and_now():
    ui, times, side = _side()
    t = np.array([1_000_000 + 2 * DAY])
    f = tf.pair_features(side, np.array([1]), t)
    np.testing.assert_allclose(f[0, :3], [3 / 4 - 0.5, np.log1p(2) / 3, np.log1p(23) / 3], atol=1e-5)
    just_after = np.full(4, side["time_range"][1] + 1)                          # a second after the last rating
    now = tf.pair_features(side, np.array([1, 2, 3, 0]), just_after)
    np.testing.assert_allclose(now[0, 0], 0.5)                                 # after all four
    np.testing.assert_allclose(now[:2, 3] * 365, [10, 10], atol=1e-4)
    np.testing.assert_allclose(now[1, :3], [0.5, np.log1p(5 + 1 / DAY) / 3, np.log1p(5 * 24 + 1 / 3600) / 3], atol=1e-5)
    assert (now[2:, :3] == 0).all() and now[3, 3] == 0                        # no history; unknown user: zeros
    assert (now[1:, 4:-1:2] == 0).all() and now[0, 4] != 0     # "now" is in no window but the last ratings'


def test_fit_times_refuses_missing_or_bad_times():
    with pytest.raises(ValueError, match="unix time"):
        tf.fit_times(np.array([1, 2]), np.array([0.0, np.nan]), 3, np.ones(2))
    with pytest.raises(ValueError, match="unix time"):
        tf.fit_times(np.array([1, 2]), np.array([5.0]), 3, np.ones(2))


def test_residuals_take_off_the_mean_and_shrunk_item_means():
    ii, r = np.array([1, 1, 2]), np.array([5.0, 3.0, 1.0])                      # mean 3
    np.testing.assert_allclose(tf.residuals(ii, r), [2 - 2 / 27, 0 - 2 / 27, -2 + 2 / 26])
