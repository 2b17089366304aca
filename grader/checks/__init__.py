"""The checks every suite shares. Import from here: `from grader.checks import assert_close`."""
from ..registry import CheckFailure, Skip
from .causality import assert_causal, dependency_map, perturb_token, perturb_vector, render_map
from .errors import failing_line
from .gradients import assert_gradients_reach, gradients_of
from .init import assert_init_loss, assert_weight_stats
from .models import assert_same_language_model, greedy_continuation, model_outputs, share_weights
from .properties import (
    assert_follows_device_and_dtype,
    assert_generator_used,
    assert_inputs_unchanged,
    assert_stable,
    expect_raises,
)
from .speed import SpeedResult, assert_speed_ratio, measure_ratio
from .values import (
    assert_close,
    cause,
    expect_int_list,
    expect_tensor,
    expect_type,
    likely_bug,
)

__all__ = [
    "CheckFailure",
    "Skip",
    "SpeedResult",
    "assert_causal",
    "assert_close",
    "assert_follows_device_and_dtype",
    "assert_generator_used",
    "assert_gradients_reach",
    "gradients_of",
    "assert_init_loss",
    "assert_inputs_unchanged",
    "assert_same_language_model",
    "assert_speed_ratio",
    "assert_stable",
    "assert_weight_stats",
    "cause",
    "dependency_map",
    "expect_int_list",
    "expect_raises",
    "expect_tensor",
    "expect_type",
    "failing_line",
    "greedy_continuation",
    "likely_bug",
    "measure_ratio",
    "model_outputs",
    "perturb_token",
    "perturb_vector",
    "render_map",
    "share_weights",
]
