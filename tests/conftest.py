"""Settings every test shares, so that none depends on this machine being fast.

Hypothesis's default deadline (200 ms per example) turns a busy machine into a failed
test: CI runs on two cores that other work shares, and a full suite once failed on a
single example that took 310 ms. Whether a codec is fast is for ``bench/``; a test asks
only whether it is right, so the one profile all tests load has no deadline.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("jxc", deadline=None)
settings.load_profile("jxc")
