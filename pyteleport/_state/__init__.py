"""Module state: what imported modules hold at run time that importing them
again on the target would not reproduce (generic attributes, adapters, the registry)."""
