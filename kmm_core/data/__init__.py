# SPDX-License-Identifier: GPL-3.0-or-later
"""Training data: caption templates (``captions``), building a HumanML3D-layout dataset from BVH archives
(``sources``, ``user_captions``, ``splits``, ``prepare``; the ``kmm-train prepare`` command is
``training/prepare_command``) and, in
``motion_dataset`` only, torch ``Dataset``s.  Everything except ``motion_dataset`` is torch-free.
"""
