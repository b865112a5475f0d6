"""Prefect flows over the featurestore library, and the ``featurestore`` command line."""
