import os
import sys
import tempfile

# JAX's persistent compilation cache for the test run and every subprocess it starts (they inherit the
# environment): a subprocess test then loads its programs instead of compiling them again. Set before JAX is
# imported; a cache folder the user already chose is kept.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "ufm-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402

# Tests compare at 1e-6 and finer: float64 available everywhere; float32 tests cast explicitly.
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(__file__))
