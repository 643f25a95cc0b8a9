"""Bits of CorrectionStatus.flags, mirrored here so the ROS-free core can report what it did."""

from __future__ import annotations

import enum


class Flag(enum.IntFlag):
    """Same values as the constants in msg/CorrectionStatus.msg."""

    LIMIT_POSITION = 1
    LIMIT_VELOCITY = 2
    LIMIT_ACCELERATION = 4
    LIMIT_JERK = 8
    OBSTACLE_SLOWDOWN = 16
    OBSTACLE_STOP = 32
    REPLANNED = 64
    STALE_ACTION = 128
    STALE_OBSTACLES = 256
    STALE_STATE = 512
    EXTRAPOLATING = 1024
    INPUT_REJECTED = 2048
    STEERING_CORRECTED = 4096
    TRACKING_ERROR = 8192


# A command cut or steered for an obstacle: what a reaction to a person in the path looks like on the wire.
OBSTACLE_REACTION = Flag.OBSTACLE_SLOWDOWN | Flag.OBSTACLE_STOP | Flag.STEERING_CORRECTED | Flag.REPLANNED
