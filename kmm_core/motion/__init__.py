# SPDX-License-Identifier: GPL-3.0-or-later
"""Motion basics (NumPy, torch-free): the 22-joint skeleton, rotations, kinematics, resampling, the MotionResult file,
the model's time units, and the clean-up of a take: the feet held on their contacts (with two-bone IK and swing
clearance), the hands of a body on all fours on the floor."""
