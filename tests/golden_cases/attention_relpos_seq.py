"""Golden check: block-0 relative-position attention alone (docs/original.md §3.6.4)."""
from golden_cases import _attention_common


def check(fx):
    _attention_common.check_attention(fx)
