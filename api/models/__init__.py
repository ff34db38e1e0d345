"""The API's request and response models, one module per area; the route modules only route.

Models the domain owns (a draft case, the feeds, the audit log, position reports) live with
it in cases/ and streams/; these are the API's own views and request bodies.
"""
