"""Simulated recordings with ground truth: MCAP files as the ROS recorder writes them, plus exact person masks.

The factory-floor scenario runs in-process (the scripted expert drives, the perception core tracks the workers from
the simulated LiDAR) and each policy step writes what the ROS stack would publish, as ROS 2 CDR messages in MCAP:
/clock, /odom, /tf, /tf_static, /cmd_vel, /perception/obstacles, /camera/color/image_raw + camera_info,
/policy/instruction and /sim/reset at each episode start, /sim/ground_truth. Log times follow the simulation clock
(as the recorder's with use_sim_time), so they jump back at each reset, as in a real multi-episode recording.

With `truth`, MuJoCo's segmentation rendering of the same camera gives the exact pixels of every worker in every
image (bit-packed masks in an .npz beside the recording): the ground truth of the anonymisation benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from physical_ai.recording import ros2msg_schema
from physical_ai.sim.sensors import RgbdCamera
from physical_ai.training.envs import AmrEnv

TYPES = {"/clock": "rosgraph_msgs/msg/Clock", "/odom": "nav_msgs/msg/Odometry", "/tf": "tf2_msgs/msg/TFMessage",
         "/tf_static": "tf2_msgs/msg/TFMessage", "/cmd_vel": "geometry_msgs/msg/Twist",
         "/perception/obstacles": "physical_ai_stack/msg/ObstacleArray",
         "/camera/color/image_raw": "sensor_msgs/msg/Image", "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
         "/policy/instruction": "std_msgs/msg/String", "/sim/reset": "std_msgs/msg/Int64"}


def _stamp(ns: int) -> dict[str, int]:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def _header(ns: int, frame: str) -> dict[str, Any]:
    return {"stamp": _stamp(ns), "frame_id": frame}


def _quat(R: np.ndarray) -> dict[str, float]:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=float).ravel())
    return {"w": float(q[0]), "x": float(q[1]), "y": float(q[2]), "z": float(q[3])}


def _transform(parent: str, child: str, T: np.ndarray, ns: int) -> dict[str, Any]:
    return {"header": _header(ns, parent), "child_frame_id": child,
            "transform": {"translation": dict(zip("xyz", map(float, T[:3, 3]), strict=True)),
                          "rotation": _quat(T[:3, :3])}}


def _yaw_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _obstacle(ob: Any, index: int) -> dict[str, Any]:
    c = ob.cluster
    return {"id": int(getattr(ob, "track_id", index)), "classification": int(c.classification),
            "confidence": float(c.confidence),
            "pose": {"position": dict(zip("xyz", map(float, c.center), strict=True)),
                     "orientation": _quat(_yaw_rotation(float(c.yaw)))},
            "size": dict(zip("xyz", map(float, c.size), strict=True)),
            "velocity": {"x": float(ob.velocity[0]), "y": float(ob.velocity[1]), "z": 0.0},
            "sensors": 1, "track_age": 1, "prediction_dt": 0.0, "predicted_positions": []}


def record_simulated(path: str | Path, episodes: int = 2, seed: int = 0, max_steps: int = 200,
                     size: tuple[int, int] = (640, 480), truth: str | Path | None = None,
                     instruction: str = "drive to the drop-off station") -> dict[str, Any]:
    """Write `episodes` expert episodes of the factory floor to an MCAP file; return counts.

    Args:
        path: the MCAP file to write.
        episodes: episodes (seeds seed, seed+1, ...), each split from the next by /sim/reset and a clock jump.
        seed: first seed.
        max_steps: policy steps (0.1 s) per episode at most.
        size: (width, height) of the camera images.
        truth: where to write the person masks (.npz: `masks` bit-packed (N, H, ceil(W/8)), `stamps_ns`, `episode`).
        instruction: the task published on /policy/instruction.
    """
    from mcap_ros2.writer import Writer

    width, height = size
    env = AmrEnv(perception="node")
    masks, stamps, mask_episode = [], [], []
    messages = images = 0
    with open(path, "wb") as f:
        writer = Writer(f)
        schemas = {t: writer.register_msgdef(ty, ros2msg_schema(ty)) for t, ty in TYPES.items()}

        def write(topic: str, msg: dict[str, Any], ns: int) -> None:
            nonlocal messages
            writer.write_message(topic, schemas[topic], msg, log_time=ns, publish_time=ns)
            messages += 1

        for e in range(episodes):
            env.reset(seed + e)
            sc = env.sc
            camera = RgbdCamera(sc.model, sc.camera, width, height)
            segment = mujoco.Renderer(sc.model, height, width) if truth is not None else None
            if segment is not None:
                segment.enable_segmentation_rendering()
            person_geoms = np.array([g for g in range(sc.model.ngeom)
                                     if sc.model.body(sc.model.geom_bodyid[g]).name in sc.person_bodies])
            t0 = sc.time_ns
            write("/sim/reset", {"data": seed + e}, t0)
            write("/policy/instruction", {"data": instruction}, t0)
            static, _ = sc.frames()
            write("/tf_static", {"transforms": [_transform(fr.parent, fr.child, fr.T, t0) for fr in static]}, t0)
            K = camera.K
            info = {"header": _header(t0, "camera_color_optical_frame"), "height": height, "width": width,
                    "distortion_model": "plumb_bob", "d": [0.0] * 5, "k": K.ravel().tolist(),
                    "r": np.eye(3).ravel().tolist(), "p": np.hstack([K, np.zeros((3, 1))]).ravel().tolist(),
                    "binning_x": 0, "binning_y": 0,
                    "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}}
            for _step in range(max_steps):
                ns = sc.time_ns
                write("/clock", {"clock": _stamp(ns)}, ns)
                T, twist = sc.odometry()
                write("/tf", {"transforms": [_transform(fr.parent, fr.child, fr.T, ns) for fr in sc.frames()[1]]}, ns)
                write("/odom", {"header": _header(ns, "odom"), "child_frame_id": "base_link",
                                "pose": {"pose": {"position": dict(zip("xyz", map(float, T[:3, 3]), strict=True)),
                                                  "orientation": _quat(T[:3, :3])}, "covariance": [0.0] * 36},
                                "twist": {"twist": {"linear": dict(zip("xyz", map(float, twist[:3]), strict=True)),
                                                    "angular": dict(zip("xyz", map(float, twist[3:]), strict=True))},
                                          "covariance": [0.0] * 36}}, ns)
                env.observe()
                write("/perception/obstacles", {"header": _header(ns, "base_link"),
                                                "obstacles": [_obstacle(ob, i) for i, ob in
                                                              enumerate(env.last_estimates)],
                                                "sensors_alive": 1, "degraded": False}, ns)
                rgb, _ = camera.render(sc.data)
                info["header"] = _header(ns, "camera_color_optical_frame")
                write("/camera/color/camera_info", info, ns)
                write("/camera/color/image_raw", {"header": _header(ns, "camera_color_optical_frame"),
                                                  "height": height, "width": width, "encoding": "rgb8",
                                                  "is_bigendian": 0, "step": width * 3, "data": rgb.tobytes()}, ns)
                images += 1
                if segment is not None:
                    segment.update_scene(sc.data, camera=sc.camera)
                    ids = segment.render()[:, :, 0]
                    masks.append(np.packbits(np.isin(ids, person_geoms), axis=1))
                    stamps.append(ns)
                    mask_episode.append(e)
                action = env.expert_action()
                write("/cmd_vel", {"linear": {"x": float(action[0]), "y": 0.0, "z": 0.0},
                                   "angular": {"x": 0.0, "y": 0.0, "z": float(action[1])}}, ns + 1_000_000)
                env.apply(action)
                if sc.done:
                    break
            camera.close()
            if segment is not None:
                segment.close()
        writer.finish()
    env.close()
    if truth is not None:
        np.savez_compressed(truth, masks=np.asarray(masks), stamps_ns=np.asarray(stamps, np.int64),
                            episode=np.asarray(mask_episode, np.int64), width=width, height=height)
    return {"messages": messages, "images": images, "episodes": episodes}
