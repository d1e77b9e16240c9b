"""The test kit's own tests run pytest inside pytest (``pytester``)."""

pytest_plugins = ["pytester"]
