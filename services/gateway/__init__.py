"""The gateway: the public REST API, authentication, spaces, users and tokens."""
