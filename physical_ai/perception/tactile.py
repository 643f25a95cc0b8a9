"""Tactile pads: contact with hysteresis, pressure-weighted contact location, and slip detection."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TactileConfig:
    """Tactile parameters."""

    taxel_pitch: float = 0.004          # centre-to-centre taxel spacing [m]
    contact_on_n: float = 0.5           # normal force that starts a contact [N]
    contact_off_n: float = 0.3          # normal force below which a contact ends [N]
    slip_speed: float = 0.02            # contact-centroid speed that counts as slip [m/s]
    slip_force_drop: float = 0.5        # relative normal-force drop per second that counts as slip [1/s]


@dataclass
class PadResult:
    """Processed state of one pad."""

    in_contact: bool
    slip: bool
    normal_force: float                 # [N]
    location: np.ndarray                # (3,) pressure-weighted centroid in the pad frame [m]


@dataclass
class _PadMemory:
    in_contact: bool = False
    force: float = 0.0
    location: np.ndarray = field(default_factory=lambda: np.zeros(3))
    stamp_ns: int = 0


class TactileProcessor:
    """Keeps per-pad state across messages (hysteresis and slip need the previous sample)."""

    def __init__(self, cfg: TactileConfig) -> None:
        self.cfg = cfg
        self._mem: dict[str, _PadMemory] = {}

    def process(self, name: str, rows: int, cols: int, pressure: np.ndarray, stamp_ns: int) -> PadResult:
        """Evaluate one pad sample.

        Args:
            name: pad name (state is kept per name).
            rows: taxel rows.
            cols: taxel columns.
            pressure: rows*cols pressures [Pa], row-major.
            stamp_ns: sample time.

        Returns:
            The pad's contact, slip, force and contact location.

        Raises:
            ValueError: when the pressure array does not match rows x cols or holds non-finite values.
        """
        p = np.asarray(pressure, float)
        if rows <= 0 or cols <= 0 or p.size != rows * cols:
            raise ValueError(f"pad {name}: {p.size} pressures for a {rows}x{cols} grid")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"pad {name}: non-finite pressure")
        grid = np.clip(p.reshape(rows, cols), 0.0, None)
        area = self.cfg.taxel_pitch ** 2
        force = float(grid.sum() * area)
        mem = self._mem.setdefault(name, _PadMemory())
        in_contact = force >= (self.cfg.contact_off_n if mem.in_contact else self.cfg.contact_on_n)
        # Taxel centres in the pad frame: x along columns, y along rows, origin at the pad centre.
        ys = (np.arange(rows) - (rows - 1) / 2) * self.cfg.taxel_pitch
        xs = (np.arange(cols) - (cols - 1) / 2) * self.cfg.taxel_pitch
        total = grid.sum()
        location = np.zeros(3)
        if total > 0:
            location[0] = float((grid.sum(axis=0) @ xs) / total)
            location[1] = float((grid.sum(axis=1) @ ys) / total)
        slip = False
        dt = (stamp_ns - mem.stamp_ns) * 1e-9
        if in_contact and mem.in_contact and dt > 0:
            speed = float(np.linalg.norm(location - mem.location)) / dt
            drop_rate = (mem.force - force) / max(mem.force, 1e-9) / dt
            slip = speed > self.cfg.slip_speed or drop_rate > self.cfg.slip_force_drop
        mem.in_contact, mem.force, mem.location, mem.stamp_ns = in_contact, force, location, stamp_ns
        return PadResult(in_contact=in_contact, slip=slip, normal_force=force, location=location)
