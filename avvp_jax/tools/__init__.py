"""The work behind launchers that is more than flags (`launch/*.py` stay thin and call these)."""
