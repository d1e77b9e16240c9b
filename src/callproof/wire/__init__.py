"""Sans-IO wire codecs: AWS eventstream and server-sent events."""
