"""Simulated sensors: RGB-D camera (mujoco.Renderer), multi-ring LiDAR and 2D scan (mj_multiRay), tactile pads.

Each sensor returns numpy arrays in its own frame; `SensorNoise` adds the configured noise, dropouts and latency.
Frames: camera images are in the optical frame (x right, y down, z forward); LiDAR points in lidar_link
(x forward, z up).
"""

from __future__ import annotations

import functools
import heapq
import itertools
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

# MuJoCo camera frame (x right, y up, -z forward) -> optical frame (x right, y down, z forward)
CAMERA_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


@dataclass
class SensorNoise:
    """Noise model of one sensor.

    Attributes:
        sigma: standard deviation of additive Gaussian noise on the measurement [sensor unit, m for ranges].
        dropout: probability that a whole message is lost.
        invalid_fraction: fraction of returns/pixels reported invalid (NaN / no return).
        latency_s: delay between measurement and delivery [s].
    """

    sigma: float = 0.0
    dropout: float = 0.0
    invalid_fraction: float = 0.0
    latency_s: float = 0.0


class DelayLine:
    """Delivers items after their latency, in time order (a sensor's transport delay)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()

    def push(self, release_ns: int, item: Any) -> None:
        """Queue `item` for delivery at `release_ns`."""
        heapq.heappush(self._heap, (release_ns, next(self._seq), item))

    def pop_ready(self, now_ns: int) -> list[Any]:
        """Items whose release time has come."""
        out = []
        while self._heap and self._heap[0][0] <= now_ns:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def clear(self) -> None:
        """Forget queued items."""
        self._heap.clear()


def body_pose(data: mujoco.MjData, body_id: int) -> np.ndarray:
    """World pose (4x4) of a body."""
    T = np.eye(4)
    T[:3, :3] = data.xmat[body_id].reshape(3, 3)
    T[:3, 3] = data.xpos[body_id]
    return T


class RgbdCamera:
    """Renders registered colour (uint8 HxWx3) and depth (float32 HxW, metres along the optical axis)."""

    def __init__(self, model: mujoco.MjModel, camera: str, width: int, height: int,
                 max_depth: float = 10.0) -> None:
        self.model = model
        self.camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self.camera_id < 0:
            raise ValueError(f"camera {camera!r} not in model")
        self.width, self.height, self.max_depth = width, height, max_depth
        # created on first render: a GL context belongs to the thread that made it current
        self._renderer: mujoco.Renderer | None = None
        self._option = mujoco.MjvOption()
        fovy = np.radians(model.cam_fovy[self.camera_id])
        f = 0.5 * height / np.tan(0.5 * fovy)
        self.K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])

    def optical_pose(self, data: mujoco.MjData) -> np.ndarray:
        """World pose (4x4) of the optical frame."""
        T = np.eye(4)
        T[:3, :3] = data.cam_xmat[self.camera_id].reshape(3, 3) @ CAMERA_TO_OPTICAL
        T[:3, 3] = data.cam_xpos[self.camera_id]
        return T

    def _ensure_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=self.height, width=self.width)
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            extent = self.model.stat.extent
            self._near = np.float32(self.model.vis.map.znear * extent)
            self._far = np.float32(self.model.vis.map.zfar * extent)
            self._rgb = np.empty((self.height, self.width, 3), np.uint8)
            self._zbuf = np.empty((self.height, self.width), np.float32)
        return self._renderer

    def render(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Return (rgb uint8 HxWx3, depth float32 HxW [m] with NaN beyond `max_depth`) from ONE render pass.

        mujoco.Renderer renders twice for colour + depth; here one mjr_render is read back with both buffers
        (the Renderer's own context, rect and scene) and the reversed-Z buffer is linearised as Renderer does.
        """
        r = self._ensure_renderer()
        r.update_scene(data, camera=self.camera_id, scene_option=self._option)
        r._gl_context.make_current()
        mujoco.mjr_render(r._rect, r.scene, r._mjr_context)
        mujoco.mjr_readPixels(self._rgb, self._zbuf, r._rect, r._mjr_context)
        # reversed-Z (mjDEPTH_ZEROFAR) window depth -> metric depth along the optical axis
        near, far = self._near, self._far
        c = np.float32(-0.5) * (-(far + near) / (far - near)) - np.float32(0.5)
        d = np.float32(-0.5) * (-(np.float32(2) * far * near) / (far - near))
        depth = (d / (self._zbuf.astype(np.float64) + c)).astype(np.float32)
        depth[(depth <= 0) | (depth > self.max_depth)] = np.nan
        # OpenGL rows start at the bottom
        return np.flipud(self._rgb).copy(), np.flipud(depth).copy()

    def render_two_pass(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Baseline: colour and depth with two mujoco.Renderer.render() calls (the documented API)."""
        r = self._ensure_renderer()
        r.update_scene(data, camera=self.camera_id, scene_option=self._option)
        rgb = r.render().copy()
        r.enable_depth_rendering()
        depth = r.render().astype(np.float32)
        r.disable_depth_rendering()
        depth[(depth <= 0) | (depth > self.max_depth)] = np.nan
        return rgb, depth

    def close(self) -> None:
        """Release the GL context (from the thread that rendered)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def add_depth_noise(depth: np.ndarray, noise: SensorNoise, rng: np.random.Generator) -> np.ndarray:
    """Depth noise growing with range squared (structured-light/stereo style) and invalid pixels.

    As for colour (add_rgb_noise), the draws come from pools of four frames' worth at random offsets per frame: fresh
    normal and uniform draws per pixel cost ~9 ms per 640x480 frame, in the simulator's physics thread.
    """
    out = depth
    if noise.sigma > 0:
        pool = _normal_pool(depth.size)
        start = int(rng.integers(0, pool.size - depth.size + 1))
        draws = pool[start:start + depth.size].reshape(depth.shape)
        out = depth + np.float32(noise.sigma) * depth * depth * draws
    if noise.invalid_fraction > 0:
        out = out.copy() if out is depth else out
        mask = _invalid_pool(float(noise.invalid_fraction), depth.size)
        start = int(rng.integers(0, mask.size - depth.size + 1))
        out[mask[start:start + depth.size].reshape(depth.shape)] = np.nan
    return out


@functools.lru_cache(maxsize=4)
def _normal_pool(size: int) -> np.ndarray:
    """4 x `size` standard normal float32 draws (a fixed seed: runs stay reproducible)."""
    return np.random.default_rng(1).standard_normal(4 * size, dtype=np.float32)


@functools.lru_cache(maxsize=4)
def _invalid_pool(fraction: float, size: int) -> np.ndarray:
    """4 x `size` booleans, each True with probability `fraction` (a fixed seed)."""
    return np.random.default_rng(2).random(4 * size, dtype=np.float32) < fraction


def add_rgb_noise(rgb: np.ndarray, noise: SensorNoise, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian pixel noise [intensity levels], rounded to whole levels and saturated at 0 and 255.

    A fresh normal draw per channel value cost the simulator ~12 % of its core (640x480 at 15 Hz, py-spy). Each
    frame instead takes a window at a random offset (from `rng`) into a pool of four frames' worth of draws: every
    value has the same Gaussian distribution and successive frames differ.
    """
    if noise.sigma <= 0:
        return rgb
    pool = _rgb_noise_pool(float(noise.sigma), rgb.size)
    start = int(rng.integers(0, pool.size - rgb.size + 1))
    noisy = rgb.astype(np.int16) + pool[start:start + rgb.size].reshape(rgb.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _rgb_noise_pool(sigma: float, size: int) -> np.ndarray:
    """4 x `size` Gaussian draws of std `sigma`, rounded to int16 levels (a fixed seed: runs stay reproducible)."""
    draws = np.random.default_rng(0).standard_normal(4 * size, dtype=np.float32) * sigma
    return np.rint(np.clip(draws, -255, 255)).astype(np.int16)


class Lidar:
    """A spinning multi-ring LiDAR cast with one mj_multiRay call per scan.

    Rings are evenly spaced in elevation over [min_elev, max_elev] (one ring at 0 for a 2D scanner); azimuth
    covers 360 degrees in `horizontal` steps. Robot geoms (group 1) and flat floor markings (group 2) are not
    cast against: the robot cannot see itself, and paint a few mm above the floor does not change a range. In a
    fleet the robots' hulls are visible to each other, and each LiDAR skips its own (`exclude_body`).
    """

    def __init__(self, model: mujoco.MjModel, body: str, rings: int, horizontal: int,
                 min_elev_deg: float = -15.0, max_elev_deg: float = 15.0, range_min: float = 0.1,
                 range_max: float = 30.0, hidden_groups: tuple[int, ...] = (1, 2), exclude_body: int = -1) -> None:
        self.model = model
        self.body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
        if self.body_id < 0:
            raise ValueError(f"lidar body {body!r} not in model")
        self.exclude_body = exclude_body
        self.rings, self.horizontal = rings, horizontal
        self.range_min, self.range_max = range_min, range_max
        elev = np.radians(np.linspace(min_elev_deg, max_elev_deg, rings)) if rings > 1 else np.zeros(1)
        self.azimuth = np.linspace(-np.pi, np.pi, horizontal, endpoint=False)
        el, az = np.meshgrid(elev, self.azimuth, indexing="ij")  # ring-major
        self.dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
        self.ring = np.repeat(np.arange(rings, dtype=np.uint16), horizontal)
        self.geomgroup = np.ones(6, dtype=np.uint8)
        self.geomgroup[list(hidden_groups)] = 0
        n = len(self.dirs)
        self._geomid = np.zeros(n, dtype=np.int32)
        self._dist = np.zeros(n, dtype=np.float64)
        self._normal = np.zeros(3 * n, dtype=np.float64)
        self._world_dirs = self.dirs.copy()
        # geom "reflectivity" for the intensity channel: mean colour brightness
        rgba = np.where((model.geom_matid >= 0)[:, None], model.mat_rgba[np.maximum(model.geom_matid, 0)],
                        model.geom_rgba)
        self._reflect = np.clip(rgba[:, :3].mean(axis=1), 0.05, 1.0)

    def cast(self, data: mujoco.MjData) -> np.ndarray:
        """Ranges [m] for every beam (ring-major), inf where nothing is hit within range."""
        R = data.xmat[self.body_id].reshape(3, 3)
        self._world_dirs = self.dirs @ R.T
        vec = self._world_dirs.ravel()
        mujoco.mj_multiRay(self.model, data, data.xpos[self.body_id].copy(), vec, self.geomgroup, 1, self.exclude_body,
                           self._geomid, self._dist, self._normal, len(self.dirs), self.range_max)
        dist = self._dist.copy()
        dist[(self._geomid < 0) | (dist < self.range_min) | (dist > self.range_max)] = np.inf
        return dist

    def intensities(self) -> np.ndarray:
        """Return intensity (0..100) of the last cast: geom brightness times cosine of incidence."""
        n = self._normal.reshape(-1, 3)
        cos_inc = np.abs(np.einsum("ij,ij->i", n, self._world_dirs))
        refl = np.where(self._geomid >= 0, self._reflect[np.maximum(self._geomid, 0)], 0.0)
        return (100.0 * refl * cos_inc).astype(np.float32)

    def scan(self, data: mujoco.MjData, noise: SensorNoise, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One noisy scan as a point cloud in the sensor frame: x, y, z, intensity (float32), ring (uint16)."""
        dist = self.cast(data)
        dist = noisy_ranges(dist, noise, rng)
        ok = np.isfinite(dist)
        pts = (self.dirs[ok] * dist[ok, None]).astype(np.float32)
        return {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "intensity": self.intensities()[ok],
                "ring": self.ring[ok]}


def noisy_ranges(dist: np.ndarray, noise: SensorNoise, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian range noise and random missing returns (inf) to a ranges array."""
    out = dist
    if noise.sigma > 0:
        out = out + noise.sigma * rng.standard_normal(out.shape)
    if noise.invalid_fraction > 0:
        out = np.where(rng.random(out.shape) < noise.invalid_fraction, np.inf, out)
    return out


@dataclass
class PadReading:
    """One tactile pad: taxel pressures and contact summary, in the pad frame."""

    name: str
    rows: int
    cols: int
    pressure: np.ndarray  # [Pa], row-major
    in_contact: bool
    slip: bool
    normal_force: float  # [N]
    contact_location: np.ndarray  # (3,) [m], pressure-weighted centroid in the pad frame


class TactilePads:
    """Fingertip pads: a taxel grid fed by the contact forces on the pad geom.

    Taxel centres are the sites `<pad>_taxel_<row>_<col>` of pad body `<pad>` (pad geom `<pad>_geom`). Each
    contact's normal force is spread over the taxels with a Gaussian of one taxel pitch around the contact point
    (MuJoCo reports a box-on-box contact as its corner points; the spread turns them into a pressure patch), so
    pressure x area sums to the pad's normal force. Slip is flagged when a contact's tangential force reaches
    `slip_ratio` of its friction cone.
    """

    def __init__(self, model: mujoco.MjModel, pads: list[str], contact_threshold_n: float = 0.05,
                 slip_ratio: float = 0.95) -> None:
        self.model, self.pads = model, pads
        self.threshold, self.slip_ratio = contact_threshold_n, slip_ratio
        self._layout = []
        for pad in pads:
            names = [model.site(i).name for i in range(model.nsite) if model.site(i).name.startswith(f"{pad}_taxel_")]
            if not names:
                raise ValueError(f"pad {pad!r} has no taxel sites")
            rc = np.array([[int(p) for p in n.rsplit("_", 2)[1:]] for n in names])
            rows, cols = int(rc[:, 0].max()) + 1, int(rc[:, 1].max()) + 1
            order = np.lexsort((rc[:, 1], rc[:, 0]))
            site_ids = np.array([model.site(names[i]).id for i in order])
            centres = model.site_pos[site_ids].copy()  # in the pad body frame
            area = 4.0 * model.site_size[site_ids, 0] * model.site_size[site_ids, 2]
            pitch = 2.0 * float(model.site_size[site_ids[0], 0])
            self._layout.append((pad, rows, cols, centres, area, pitch, model.body(pad).id,
                                 model.geom(f"{pad}_geom").id))

    def read(self, data: mujoco.MjData) -> list[PadReading]:
        """Read every pad."""
        out = []
        force6 = np.zeros(6)
        ncon = data.ncon
        geoms = data.contact.geom[:ncon] if ncon else np.zeros((0, 2), int)
        for pad, rows, cols, centres, area, pitch, body, geom in self._layout:
            force = np.zeros(len(centres))
            total, slip, loc_acc = 0.0, False, np.zeros(3)
            R, origin = data.xmat[body].reshape(3, 3), data.xpos[body]
            for i in np.flatnonzero((geoms[:, 0] == geom) | (geoms[:, 1] == geom)):
                c = data.contact[i]
                mujoco.mj_contactForce(self.model, data, int(i), force6)
                fn, ft = abs(force6[0]), float(np.hypot(force6[1], force6[2]))
                local = R.T @ (c.pos - origin)
                w = np.exp(-0.5 * np.sum((centres - local) ** 2, axis=1) / pitch**2)
                force += fn * w / max(w.sum(), 1e-12)
                total += fn
                loc_acc += fn * local
                slip |= fn > self.threshold and ft >= self.slip_ratio * c.friction[0] * fn
            in_contact = bool(total > self.threshold)
            loc = loc_acc / total if total > 0 else np.zeros(3)
            out.append(PadReading(pad, rows, cols, (force / area).astype(np.float32), in_contact,
                                  bool(slip and in_contact), float(total), loc))
        return out
