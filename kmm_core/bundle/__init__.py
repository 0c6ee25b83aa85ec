# SPDX-License-Identifier: GPL-3.0-or-later
"""The model bundle (torch-free at import): loading it, its checksums, which model a name means, its vocabulary."""
