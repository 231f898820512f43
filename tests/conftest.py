import os
import sys

import jax

# Tests compare at 1e-6 and finer: float64 available everywhere; float32 tests cast explicitly.
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(__file__))
