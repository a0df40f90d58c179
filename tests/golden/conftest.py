import pathlib
import sys

# The golden tests share golden_helpers.py (plain module next to them).
_here = str(pathlib.Path(__file__).resolve().parent)
if _here not in sys.path:
    sys.path.insert(0, _here)
