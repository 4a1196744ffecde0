"""A tiny library that tests/test_module_state.py installs in a user
site-packages folder, so that pyteleport treats it as installed (not the
program's own code): it keeps state in its modules the way real libraries do."""
