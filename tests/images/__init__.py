"""Docker images for the Docker tests, built locally without a registry (see ``build.py``)."""
