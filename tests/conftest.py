import sys
from pathlib import Path

# Tests import the package from the checkout whether or not it is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addon"))
