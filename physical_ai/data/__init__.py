"""The data pipeline: robot recordings to anonymised, cleansed LeRobot datasets (`physai dataset ...`)."""
