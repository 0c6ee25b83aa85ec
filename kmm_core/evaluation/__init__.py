# SPDX-License-Identifier: GPL-3.0-or-later
"""Evaluation: how good generated motions are, measured without the generator's own parts.

- ``retrieval_metrics``: R-precision, MM-Dist, FID, Diversity, MultiModality from evaluator embeddings (NumPy).
- ``confidence``: mean and 95% confidence interval over repeated runs with fixed seeds.
- ``directional``: geometric check that a motion moves the side (left/right) its prompt names.
- ``paraphrases``: held-out directional prompts that never occur in the training captions.
- ``motion_quality``: transition smoothness (Peak Jerk, AUJ), foot skating, floor penetration.
- ``report``: results.json / results.md.

``kmm-train eval`` is split by job: ``settings`` (sizes, seeds, device), ``split_data`` (the split's items and motion
windows), ``evaluator`` (the evaluation encoders), ``generated_motions`` (what a bundle generates for the metrics),
``bundle_metrics`` (every metric of the ground truth and of one bundle) and ``evaluate`` (the command line).

The metric modules are torch-free; only an evaluator network (text and motion encoders) needs torch.
"""
