"""Resource names and shared vocabulary; the bottom layer, imported by everything."""
