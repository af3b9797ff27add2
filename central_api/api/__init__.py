"""The HTTP face of central: routers, their dependencies and the error mapping."""
