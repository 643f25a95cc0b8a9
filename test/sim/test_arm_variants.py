"""The arm cell's hard variant: heavy, slippery parts whose grasp outcome depends on the grasp (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from physical_ai.sim.experts import ArmPickPlaceExpert, run_episode
from physical_ai.sim.scenarios import HARD_MATERIALS, HARD_TOLERANCE, PARTS, make_scenario

HEAVY_PRISM_SEED = 5  # the target is the prism


def test_hard_variant_keeps_the_seed_s_scene_and_draws_materials_per_seed():
    normal, hard = make_scenario("arm", 3), make_scenario("arm", 3, {"variant": "hard"})
    for part in PARTS:
        np.testing.assert_allclose(hard.part_position(part), normal.part_position(part), atol=1e-9)
    assert hard.target_part == normal.target_part
    extra = hard.ground_truth().extra
    drawn = np.column_stack([extra["part_mass_kg"], extra["part_friction"]])
    nominal = np.array([HARD_MATERIALS[p] for p in PARTS])
    assert np.all(np.abs(drawn / nominal - 1) <= HARD_TOLERANCE + 1e-9)
    assert "part_mass_kg" not in normal.ground_truth().extra
    assert normal.model.body_mass[normal.model.body("part_prism").id] == pytest.approx(0.06)
    again = make_scenario("arm", 3, {"variant": "hard"}).ground_truth().extra
    assert again["part_mass_kg"] == extra["part_mass_kg"]
    hard.reset(4)
    assert hard.ground_truth().extra["part_mass_kg"] != extra["part_mass_kg"]


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="variant"):
        make_scenario("arm", 0, {"variant": "impossible"})


def test_a_heavy_slippery_prism_slips_from_a_narrow_grasp_and_holds_at_a_quarter_turn():
    options = {"variant": "hard"}
    sc = make_scenario("arm", HEAVY_PRISM_SEED, options)
    assert sc.target_part == "part_prism"
    ok_narrow, narrow = run_episode("arm", HEAVY_PRISM_SEED, options=options)
    assert not ok_narrow and not narrow._lifted  # the fingers slid off when the arm lifted
    sc = make_scenario("arm", HEAVY_PRISM_SEED, options)
    ok_wide, _ = run_episode("arm", HEAVY_PRISM_SEED, options=options,
                             expert=ArmPickPlaceExpert(sc, yaw_offset=np.pi / 2))
    assert ok_wide
    ok_normal, _ = run_episode("arm", HEAVY_PRISM_SEED)  # the same grasp holds the light catalogue prism
    assert ok_normal
