"""One router per resource, joined in ``central_api.api.main``."""
