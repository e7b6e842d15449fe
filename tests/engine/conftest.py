"""Make the toy task helper importable as ``toytask`` (also by spawned ranks, which inherit ``sys.path``)."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
