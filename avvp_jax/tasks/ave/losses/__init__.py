"""AVE's official losses, one module per model family."""
