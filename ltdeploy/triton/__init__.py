"""NVIDIA Triton serving: the model repository writer, the Python-backend model, a local server for tests."""
