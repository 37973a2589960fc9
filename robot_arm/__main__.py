"""`python -m robot_arm` runs the robot-arm CLI."""

from robot_arm.cli import main

main()
