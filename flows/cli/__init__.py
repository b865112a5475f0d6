"""The ``featurestore`` command line: one module per noun, each command a few lines."""
