"""Package run with ``python -m scen_pkg`` and ``python -m scen_pkg.mod``."""
GREETING = "hello from scen_pkg"
