"""Golden check: reward head (MLP 2 x hidden -> 255 two-hot logits), docs/original.md §3.7 / §5.8."""
from golden_cases._heads_common import check_twohot_head


def check(fx):
    check_twohot_head(fx, "RewardNetwork")
