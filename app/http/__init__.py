"""The HTTP layer: routes, answers, middleware, forms and errors over the serving core."""
