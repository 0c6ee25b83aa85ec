# SPDX-License-Identifier: GPL-3.0-or-later
"""Motion file formats read into `BvhMotion` (torch-free): CMU exponential-map text (`cmu_expmap`) and DeepMimic
clips (`deepmimic`).  Acclaim ASF/AMC lives in `kmm_core.acclaim`."""
