"""The tracker moved to the core: ``ufm.Tracker`` (``ufm/tracker.py``). This name stays importable."""
from ufm.tracker import FIGURE, HISTORY, RESERVED, Tracker, draw

__all__ = ["Tracker", "HISTORY", "FIGURE", "RESERVED", "draw"]
