"""Obstacle classes from evidence: a class is claimed only where the evidence supports it, else "unknown".

A wrong class costs more than none: the corrector keeps larger margins to people and waits for them, the world model
predicts people walking, so a wall sliver called a person stalls an AMR, a hedge called a car gets a car's motion.
An unknown obstacle is still avoided. On one frame the evidence is the box's shape with the points' vertical extent
(people and vehicles are solid and stand on the ground, canopies float; a box that reaches the height cut-off was cut,
its real shape is unknown); over time a track moving at walking speed; from a camera a person detection (camera.py).
Shape rules were checked on the nuScenes sample (`physai perception eval`): 26 of 75 unlabelled obstacles claimed a
class with the old box-size rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from physical_ai.perception.lidar import CLASS_PERSON, CLASS_STATIC, CLASS_UNKNOWN, CLASS_VEHICLE, Cluster


@dataclass
class ClassifyConfig:
    """What the evidence must show for each class (heights above the ground, lengths in the ground plane) [m]."""

    classes: frozenset[int] = field(default_factory=lambda: frozenset({CLASS_PERSON, CLASS_VEHICLE}))
    person_length: tuple[float, float] = (0.2, 0.8)   # longer footprint side (one side of a body, or its arc)
    person_width: float = 0.6                          # shorter footprint side, at most
    person_top: tuple[float, float] = (1.0, 2.1)       # head height
    person_extent: float = 0.4                         # points span at least this vertically (not a floating sliver)
    person_speed: tuple[float, float] = (0.3, 3.0)     # a person-sized track moving this fast is walking [m/s]
    moving_length: float = 1.2                         # a walking person's footprint (swinging legs), at most
    vehicle_face: tuple[float, float] = (1.2, 5.5)     # longer visible side: a rear (1.2+) up to a large van
    vehicle_width: float = 3.0
    vehicle_top: tuple[float, float] = (0.8, 2.6)      # a car partly hidden up to a van; trees, canopies higher
    low_vehicle: tuple[float, float] = (1.3, 0.5)      # a top below [0] (a barrier's height) needs a depth of [1]
    vehicle_bottom: float = 1.0                        # its lowest point: a body over wheels, not a canopy
    static_length: float = 8.0                         # longer than any vehicle: a structure (wall, kerb, hedge)
    row_width: float = 0.6                             # low unclassified clusters thinner than this are rows ...
    row_piece: float = 2.0                             # ... reported in pieces at most this long (see split_rows)
    cut_margin: float = 0.05                           # a top this close to the height cut-off was cut [m]
    vehicle_length_prior: float = 4.2                  # a vehicle seen end-on is completed to this length; 0 = off
    vehicle_width_prior: float = 1.7                   # a vehicle seen side-on is completed to this width
    rear_face_max: float = 2.1                         # a face up to this wide may be a rear: cars are <= 2.1 m wide


@dataclass
class ShapeEvidence:
    """Per-cluster measurements, (K,) arrays.

    Box sides (length >= width), top and bottom point heights above the ground [m].
    """

    length: np.ndarray
    width: np.ndarray
    top: np.ndarray
    bottom: np.ndarray


def classify_shape(ev: ShapeEvidence, max_height: float, cfg: ClassifyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Classes and confidences from one frame's shape evidence.

    Args:
        ev: the clusters' measurements.
        max_height: the segmentation's height cut-off [m] (points above it were dropped).
        cfg: the evidence rules and the robot's classes.

    Returns:
        (K,) CLASS_* and (K,) confidences in [0, 1].
    """
    cut = ev.top >= max_height - cfg.cut_margin
    extent = ev.top - ev.bottom
    person = (person_sized(ev, cfg, cfg.person_length[1]) & ~cut & (extent >= cfg.person_extent))
    vehicle = ((ev.length >= cfg.vehicle_face[0]) & (ev.length <= cfg.vehicle_face[1])
               & (ev.width <= cfg.vehicle_width) & (ev.top >= cfg.vehicle_top[0]) & (ev.top <= cfg.vehicle_top[1])
               & (ev.bottom <= cfg.vehicle_bottom) & ~cut
               & ((ev.top >= cfg.low_vehicle[0]) | (ev.width >= cfg.low_vehicle[1])))
    person &= CLASS_PERSON in cfg.classes
    vehicle &= CLASS_VEHICLE in cfg.classes
    rules = [(ev.length > cfg.static_length, CLASS_STATIC, 0.6), (person, CLASS_PERSON, 0.5),
             (vehicle, CLASS_VEHICLE, 0.6)]
    conds = [r[0] for r in rules]
    return np.select(conds, [r[1] for r in rules], CLASS_UNKNOWN), np.select(conds, [r[2] for r in rules], 0.5)


def person_sized(ev: ShapeEvidence, cfg: ClassifyConfig, max_length: float) -> np.ndarray:
    """Which clusters have a person's footprint (longer side up to `max_length`) and head height."""
    return ((ev.length >= cfg.person_length[0]) & (ev.length <= max_length) & (ev.width <= cfg.person_width)
            & (ev.top >= cfg.person_top[0]) & (ev.top <= cfg.person_top[1]))


def walking(speed: float, age: int, cfg: ClassifyConfig) -> bool:
    """Whether a track's motion is a person's: tracked for 3+ frames at walking speed."""
    return CLASS_PERSON in cfg.classes and age >= 3 and cfg.person_speed[0] <= speed <= cfg.person_speed[1]


def classify_clusters(clusters: list[Cluster], max_height: float, cfg: ClassifyConfig) -> None:
    """Set each cluster's class and confidence from its shape (in place) and complete vehicles' hidden sides.

    Args:
        clusters: one frame's clusters (their `size` is length, width, top; `bottom` their lowest point).
        max_height: the segmentation's height cut-off [m].
        cfg: the evidence rules.
    """
    if not clusters:
        return
    size = np.array([c.size for c in clusters])
    ev = ShapeEvidence(size[:, 0], size[:, 1], size[:, 2], np.array([c.bottom for c in clusters]))
    classes, confidence = classify_shape(ev, max_height, cfg)
    for c, k, p in zip(clusters, classes, confidence, strict=True):
        c.classification, c.confidence = int(k), float(p)
        if c.classification == CLASS_VEHICLE:
            complete_vehicle(c, cfg.vehicle_length_prior, cfg.vehicle_width_prior, cfg.rear_face_max)


def complete_vehicle(c: Cluster, length_prior: float, width_prior: float, rear_face_max: float) -> None:
    """Grow a vehicle box away from the sensor (at the origin) along the hidden dimension, in place.

    A LiDAR sees the near faces of a vehicle only. When both faces of a corner are visible (an L, depth >= 1 m) the
    rectangle is already complete. When one face is seen, the box axis closer to the viewing ray is hidden: behind
    a face no wider than a car (a rear or front, <= `rear_face_max`) lies the vehicle's length, behind a wider one
    (a side, or a truck's rear, which is then completed short of its length) the width.
    A length prior of 0 turns completion off.
    """
    if length_prior <= 0:
        return
    axes = np.array([[np.cos(c.yaw), np.sin(c.yaw)], [-np.sin(c.yaw), np.cos(c.yaw)]])
    ray = c.center[:2] / max(float(np.linalg.norm(c.center[:2])), 1e-6)
    depth_axis = int(np.argmax(np.abs(axes @ ray)))
    face = c.size[1 - depth_axis]
    if c.size[depth_axis] >= 1.0:
        return
    target = length_prior if face <= rear_face_max else width_prior
    grow = target - c.size[depth_axis]
    if grow > 0:
        direction = axes[depth_axis] * np.sign(axes[depth_axis] @ ray)
        c.center[:2] += direction * grow / 2
        c.size[depth_axis] = target
        if c.size[1] > c.size[0]:
            c.size[:2] = c.size[1::-1].copy()
            c.yaw = float((c.yaw + np.pi) % np.pi - np.pi / 2)


def could_be_person(c: Cluster, cfg: ClassifyConfig) -> bool:
    """Whether a cluster's shape allows a person (a walking one's wider footprint included).

    Motion or a camera detection needs this before it may call a cluster a person.
    """
    ev = ShapeEvidence(np.array([c.size[0]]), np.array([c.size[1]]), np.array([c.size[2]]), np.array([c.bottom]))
    return CLASS_PERSON in cfg.classes and bool(person_sized(ev, cfg, cfg.moving_length)[0])


def split_rows(clusters: list[Cluster], points: np.ndarray, cfg: ClassifyConfig) -> list[Cluster]:
    """Cut rows of low, thin things into pieces of at most `row_piece` along their length.

    Barriers, bollards, parked bicycles or a hedge that touch merge into one cluster, and one long box says nothing of
    where each is (on the nuScenes sample, a 4.9 m cluster held two barriers and a 2.4 m one another two). What is
    thinner than `row_width`, lower than a car's roof (`low_vehicle[0]`) and not classified is cut evenly along its
    axis; each piece keeps its own points. Cars seen side-on are as thin but taller, and keep their box.

    Args:
        clusters: classified clusters; their `point_index` index into `points`.
        points: (M, 3) the segmentation's obstacle points.
        cfg: the rules (`row_piece`, `row_width`).

    Returns:
        The clusters with each such row replaced by its pieces.
    """
    out = []
    for c in clusters:
        if (c.classification != CLASS_UNKNOWN or c.point_index is None or c.size[0] <= cfg.row_piece
                or c.size[1] > cfg.row_width or c.size[2] >= cfg.low_vehicle[0]):
            out.append(c)
            continue
        axis = np.array([np.cos(c.yaw), np.sin(c.yaw)])
        along = (points[c.point_index, :2] - c.center[:2]) @ axis
        k = int(np.ceil(c.size[0] / cfg.row_piece))
        edges = np.linspace(along.min(), along.max(), k + 1)
        piece = np.clip(np.searchsorted(edges, along, side="right") - 1, 0, k - 1)
        for j in range(k):
            mine = piece == j
            if not mine.any():
                continue
            u = along[mine]
            center = c.center.copy()
            center[:2] += axis * (u.min() + u.max()) / 2
            out.append(Cluster(center=center, size=np.array([max(u.max() - u.min(), c.size[1]), c.size[1], c.size[2]]),
                               yaw=c.yaw, num_points=int(mine.sum()), confidence=c.confidence, sensors=c.sensors,
                               bottom=c.bottom, point_index=c.point_index[mine]))
    return out
