# SPDX-License-Identifier: GPL-3.0-or-later
"""Jobs: the one controller of the running job and the scene -> request runner, with the redraw timer they use."""
