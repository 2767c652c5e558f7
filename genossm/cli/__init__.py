"""The ``genossm`` command line."""
