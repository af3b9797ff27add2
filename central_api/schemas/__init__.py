"""The HTTP shapes of central's requests and answers, one module per resource.

Only the routes (``central_api.api.routes``) use these; services take and return central's
own domain objects (dataclasses), so the same service can serve a route, a command or a
test without knowing how its answer is spelled on the wire. Each answer model reads a
domain object by its attributes (``ItemOut.model_validate(item)``).
"""
