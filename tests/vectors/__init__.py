"""Protocol test vectors (``*.json``) and the script that makes them (``make_vectors.py``)."""
