"""Service directory: services, areas and bed counts (capacity.py), anonymous matching
(matching.py), the HSDS import (hsds.py); pages in views.py, commands in cli.py."""
