# SPDX-License-Identifier: GPL-3.0-or-later
"""The model runs in a separate Python process (the "worker") and talks JSON lines over stdin/stdout.

`protocol.py` defines the messages, `client.py` starts and talks to the worker; both are torch-free so the Blender
add-on can use them.  The server side (`python -m kmm_core.worker`) imports torch and lives in its own module.
See docs/worker_protocol.md.
"""
