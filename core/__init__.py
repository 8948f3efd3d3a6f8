"""The shared core every app imports: errors, base API views, middleware, OpenAPI helpers.

It imports no app; Django's wiring (the `sigsentry` package) sits above every app.
"""
