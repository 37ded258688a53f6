"""pytest plugin (filled in by the plugin issue)."""
