"""The perception pipeline's parameters, defined once.

The perception_fusion node declares them from this table (description, unit and range), and `pipeline_config`
builds the core's `PipelineConfig` from the same names, so a YAML file read without ROS (`physai perception eval`,
training environments) configures exactly what the node runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from physical_ai.perception.classify import ClassifyConfig
from physical_ai.perception.lidar import CLASS_PERSON, CLASS_UNKNOWN, CLASS_VEHICLE, SegmentationConfig
from physical_ai.perception.occupancy import OccupancyConfig
from physical_ai.perception.part_memory import PartMemoryConfig
from physical_ai.perception.parts import PartsConfig
from physical_ai.perception.pipeline import PipelineConfig
from physical_ai.perception.tracking import TrackerConfig


@dataclass(frozen=True)
class Param:
    """One parameter: ROS name, default (its type is the parameter's type), description with unit, range."""

    name: str
    default: Any
    description: str
    value_range: tuple[float, float] | None = None


PARAMS: tuple[Param, ...] = (
    # clustering grid and ground
    Param("x_min_m", -20.0, "Grid extent behind the robot [m]", (-200.0, 0.0)),
    Param("x_max_m", 20.0, "Grid extent ahead of the robot [m]", (0.0, 200.0)),
    Param("y_min_m", -20.0, "Grid extent to the right [m]", (-200.0, 0.0)),
    Param("y_max_m", 20.0, "Grid extent to the left [m]", (0.0, 200.0)),
    Param("cell_size_m", 0.2, "Clustering grid resolution [m]", (0.01, 2.0)),
    Param("ground_threshold_m", 0.2, "Points higher than this above the ground are obstacles [m]", (0.0, 2.0)),
    Param("max_height_m", 2.5, "Points higher than this above the ground are ignored [m]", (0.1, 20.0)),
    Param("ground_z_m", 0.0, "Ground height in base_frame from the robot's mount (sensor points reach base_frame "
          "through /tf, so the sensor's height and tilt are already in it); the fit only refines it [m]",
          (-10.0, 10.0)),
    Param("ground_max_offset_m", 0.15, "The fitted ground may move at most this far from ground_z_m at the robot, "
          "else the mount's plane is used and the failure is reported [m]", (0.0, 2.0)),
    Param("ground_max_tilt_deg", 4.0, "... and tilt at most this much from level in base_frame [deg]", (0.0, 30.0)),
    Param("ground_cell_m", 1.0, "The ground is fitted to the lowest point of each cell this large (at least 6 cells "
          "with floor in view, else the mount's plane is used) [m]", (0.01, 10.0)),
    Param("min_cluster_points", 5, "Smallest cluster kept [points]", (1, 10000)),
    Param("vehicle_length_prior_m", 4.2, "Vehicle length for box completion; 0 = no completion [m]", (0.0, 20.0)),
    Param("self_crop_box_m", [0.0], "The robot's own body as a box in base_frame (x_min, x_max, y_min, y_max, "
          "z_min, z_max): range and depth points inside it are dropped; [0.0] = none [m]"),
    # classes
    Param("classes", ["person", "vehicle"], "Classes this robot may report (person, vehicle); everything else, "
          "and what the evidence does not support, is a generic obstacle that is still avoided"),
    Param("person_moving_min_mps", 0.3, "A person-sized track moving at least this fast is a person [m/s]",
          (0.0, 10.0)),
    Param("person_moving_max_mps", 3.0, "... and at most this fast [m/s]", (0.0, 20.0)),
    # camera
    Param("people_detector", "ssd", "Camera people detector: ssd (MobileNetV2-SSD trained on Open Images, from "
          "MediaPipe; weights installed by `make venv`), hog (OpenCV's HOG, contrib build) or off (quoted in YAML, "
          "where a bare off is false)"),
    Param("people_detector_tile_px", 0, "SSD: side of the square tiles across the image's middle rows it also "
          "looks at, for people at range in wide images; 0 = the whole image only [px]", (0, 4096)),
    Param("people_detector_threshold", 0.3, "SSD: lowest person score kept", (0.0, 1.0)),
    Param("hog_frame_scale", 0.5, "HOG: image scale", (0.1, 2.0)),
    Param("people_detector_rate_hz", 4.0, "Images a second the full-frame people detector takes, in its own "
          "low-priority thread: the LiDAR cycle never waits for it and fuses the newest detections; 0 = in the "
          "cycle, on every image [Hz]", (0.0, 100.0)),
    Param("camera_person_max_range_m", 15.0, "People the camera sees and no range sensor does are placed where "
          "their feet meet the ground, only this near: the range read from one pixel row grows its error with the "
          "square of the range [m]", (0.0, 200.0)),
    Param("camera_people_max_age_s", 0.5, "Detections older than this (by image stamp) are not fused [s]",
          (0.0, 5.0)),
    # tracking
    Param("track_gate_m", 2.0, "Largest association distance [m]", (0.1, 20.0)),
    Param("track_init_speed_std_mps", 2.0, "Velocity std of a new track (its association gate on the next frame): "
          "about half the fastest object's speed [m/s]", (0.1, 50.0)),
    Param("track_max_missed", 3, "Frames a track coasts before deletion", (0, 100)),
    Param("moving_speed_mps", 0.3, "Speed above which an obstacle is moving [m/s]", (0.0, 10.0)),
    Param("prediction_steps", 5, "Predicted positions per obstacle", (0, 50)),
    Param("prediction_dt_s", 0.2, "Spacing of predicted positions [s]", (0.01, 5.0)),
    # occupancy
    Param("occupancy_enabled", True, "Publish /perception/occupancy"),
    Param("occupancy_size_m", 20.0, "Side of the robot-centred grid [m]", (1.0, 200.0)),
    Param("occupancy_resolution_m", 0.1, "Occupancy cell size [m]", (0.01, 2.0)),
    Param("inflation_person_m", 0.8, "Inflation around people [m]", (0.0, 10.0)),
    Param("inflation_vehicle_m", 0.5, "Inflation around vehicles [m]", (0.0, 10.0)),
    Param("inflation_default_m", 0.3, "Inflation around others [m]", (0.0, 10.0)),
    Param("inflation_default_m_static", 0.3, "Inflation around static obstacles [m]", (0.0, 10.0)),
    # parts (arm cell)
    Param("parts_enabled", False, "Estimate part poses from depth (arm cell)"),
    Param("table_z_m", 0.0, "Table top height in base_frame [m]", (-5.0, 5.0)),
    Param("workspace_x_min_m", -1.0, "Workspace x min [m]", (-10.0, 10.0)),
    Param("workspace_x_max_m", 1.0, "Workspace x max [m]", (-10.0, 10.0)),
    Param("workspace_y_min_m", -1.0, "Workspace y min [m]", (-10.0, 10.0)),
    Param("workspace_y_max_m", 1.0, "Workspace y max [m]", (-10.0, 10.0)),
    Param("part_memory_hold_s", 0.0, "A part the robot hides from the depth camera (or touches) is reported at its "
          "last clear fit for up to this long; needs the self-filter; 0 = off [s]", (0.0, 60.0)),
    Param("part_memory_margin_m", 0.02, "Clearance between the robot's projected self-filter spheres and a part's "
          "footprint [m]", (0.0, 0.5)),
    Param("part_catalogue_m", [0.0], "Sizes of the cell's parts as triples (shorter side, longer side, height) "
          "[m]; only clusters of these sizes on the table are classified parts; [0.0] = any size"),
)
_CLASS_NAMES = {"person": CLASS_PERSON, "vehicle": CLASS_VEHICLE}


def resolve(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every table parameter's value: from `values` where given (other keys are ignored), else the default.

    Raises:
        ValueError: for a value outside its range or of the wrong type.
    """
    out = {}
    for p in PARAMS:
        v = values.get(p.name, p.default)
        if isinstance(p.default, bool):
            if not isinstance(v, bool):
                raise ValueError(f"parameter {p.name}: bool expected, got {v!r}")
        elif isinstance(p.default, (int, float)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"parameter {p.name}: number expected, got {v!r}")
            if isinstance(p.default, float):
                v = float(v)
            elif float(v).is_integer():
                v = int(v)
            else:
                raise ValueError(f"parameter {p.name}: integer expected, got {v!r}")
            if p.value_range is not None and not p.value_range[0] <= v <= p.value_range[1]:
                raise ValueError(f"parameter {p.name}={v} outside [{p.value_range[0]}, {p.value_range[1]}]")
        elif isinstance(p.default, list) and not isinstance(v, (list, tuple)):
            raise ValueError(f"parameter {p.name}: list expected, got {v!r}")
        out[p.name] = v
    return out


def pipeline_config(values: Mapping[str, Any]) -> PipelineConfig:
    """The pipeline configuration from parameter values (a node's parameters or a YAML `ros__parameters` dict).

    Raises:
        ValueError: for an out-of-range value, an unknown class or a malformed box or catalogue.
    """
    v = resolve(values)
    unknown = [c for c in v["classes"] if c not in _CLASS_NAMES]
    if unknown:
        raise ValueError(f"parameter classes: unknown {unknown}; known: {sorted(_CLASS_NAMES)}")
    seg = SegmentationConfig(
        x_range=(v["x_min_m"], v["x_max_m"]), y_range=(v["y_min_m"], v["y_max_m"]), cell_size=v["cell_size_m"],
        ground_threshold=v["ground_threshold_m"], max_height=v["max_height_m"], default_ground_z=v["ground_z_m"],
        ground_max_offset=v["ground_max_offset_m"], max_ground_tilt_deg=v["ground_max_tilt_deg"],
        ground_cell=v["ground_cell_m"],
        min_cluster_points=v["min_cluster_points"], self_crop_box=_crop_box(v["self_crop_box_m"]))
    classify = ClassifyConfig(classes=frozenset(_CLASS_NAMES[c] for c in v["classes"]),
                              person_speed=(v["person_moving_min_mps"], v["person_moving_max_mps"]),
                              vehicle_length_prior=v["vehicle_length_prior_m"])
    trk = TrackerConfig(gate_m=v["track_gate_m"], init_speed_std=v["track_init_speed_std_mps"],
                        max_missed=v["track_max_missed"], moving_speed=v["moving_speed_mps"],
                        prediction_steps=v["prediction_steps"], prediction_dt=v["prediction_dt_s"])
    occ = OccupancyConfig(size_m=v["occupancy_size_m"], resolution=v["occupancy_resolution_m"],
                          inflation_m={CLASS_PERSON: v["inflation_person_m"], CLASS_VEHICLE: v["inflation_vehicle_m"],
                                       CLASS_UNKNOWN: v["inflation_default_m"]},
                          default_inflation_m=v["inflation_default_m_static"])
    parts = memory = None
    if v["parts_enabled"]:
        parts = PartsConfig(table_z=v["table_z_m"], workspace_x=(v["workspace_x_min_m"], v["workspace_x_max_m"]),
                            workspace_y=(v["workspace_y_min_m"], v["workspace_y_max_m"]))
        memory = PartMemoryConfig(hold_s=v["part_memory_hold_s"], margin_m=v["part_memory_margin_m"])
    return PipelineConfig(segmentation=seg, classify=classify, tracker=trk, occupancy=occ, parts=parts,
                          people_detector=v["people_detector"], people_tile_px=v["people_detector_tile_px"],
                          people_threshold=v["people_detector_threshold"], hog_frame_scale=v["hog_frame_scale"],
                          people_rate_hz=v["people_detector_rate_hz"],
                          camera_people_max_age_s=v["camera_people_max_age_s"],
                          camera_person_max_range_m=v["camera_person_max_range_m"],
                          occupancy_enabled=v["occupancy_enabled"],
                          part_memory=memory, part_catalogue=_part_catalogue(v["part_catalogue_m"]))


def _crop_box(values: list[float]) -> np.ndarray | None:
    if list(values) == [0.0]:
        return None
    box = np.array(values, float)
    if box.shape != (6,) or np.any(box[1::2] <= box[0::2]):
        raise ValueError(f"self_crop_box_m: (x_min, x_max, y_min, y_max, z_min, z_max) with min < max expected, "
                         f"got {list(values)}")
    return box


def _part_catalogue(values: list[float]) -> np.ndarray | None:
    if list(values) == [0.0]:
        return None
    if len(values) % 3 or min(values) <= 0:
        raise ValueError(f"part_catalogue_m: positive (short, long, height) triples expected, got {list(values)}")
    sizes = np.array(values, float).reshape(-1, 3)
    return np.column_stack([np.sort(sizes[:, :2], axis=1), sizes[:, 2]])
