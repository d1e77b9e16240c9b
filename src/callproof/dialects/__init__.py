"""One module per wire API (see ``base``)."""
