"""Perception core: LiDAR segmentation, camera fusion, tracking, tactile, occupancy, parts and synchronisation."""
