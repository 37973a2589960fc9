"""robot_arm package."""
