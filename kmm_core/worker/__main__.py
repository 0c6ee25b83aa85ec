# SPDX-License-Identifier: GPL-3.0-or-later
"""`python -m kmm_core.worker`: run the worker (see server.py and docs/worker_protocol.md)."""

import os
import sys

from .server import main

_code = main()
# Exit at once: the stdin reader thread may still be blocked in a read, and interpreter shutdown would wait on it
# (and on torch's thread pools) for seconds; everything worth keeping has been written and flushed.
sys.stderr.flush()
os._exit(_code)
