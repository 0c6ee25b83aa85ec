# SPDX-License-Identifier: GPL-3.0-or-later
"""Motion basics (NumPy, torch-free): the 22-joint skeleton, rotations, kinematics, resampling, the MotionResult file,
the model's time units, and the foot-contact clean-up with its two-bone IK and swing clearance."""
