"""The world-model probe's statistics (twister_jax/probe.py); its command on a trained run is in test_program.py."""
import numpy as np

from twister_jax import probe


def _logits(codes, classes=4):
    """(N, S) integer modes -> (N, S, classes) logits whose argmax is that mode."""
    codes = np.asarray(codes)
    return np.eye(classes)[codes] * 3.0 - 1.0


def test_one_code_for_every_frame():
    stats = probe.code_stats(_logits([[1, 2, 0]] * 5))
    assert stats == {"distinct_codes": 1, "top_code_share": 1.0}


def test_codes_count_whole_latents_not_single_variables():
    # every variable takes two values over the frames, but only three whole codes occur
    codes = [[0, 0], [0, 0], [0, 1], [1, 0]]
    assert probe.code_stats(_logits(codes)) == {"distinct_codes": 3, "top_code_share": 0.5}


def test_mean_frame_loss_units():
    black = np.zeros((2, 2, 3), np.uint8)
    white = np.full((2, 2, 3), 255, np.uint8)
    assert probe.mean_frame_loss(np.stack([black, black])) == 0.0
    # mean frame 0 after preprocessing; each of the 12 values is 0.5 away: 12 * 0.25 per frame
    assert np.isclose(probe.mean_frame_loss(np.stack([black, white])), 3.0)
