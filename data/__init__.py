"""The bundled real sample (see README.md here), installed as ``genossm.sample_data``."""
