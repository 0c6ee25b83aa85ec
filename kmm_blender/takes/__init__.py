# SPDX-License-Identifier: GPL-3.0-or-later
"""Takes: motion files written as actions (all or nothing), their provenance, segment regeneration, export."""
