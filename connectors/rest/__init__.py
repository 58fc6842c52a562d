"""The REST stream kind: HTTP client with one retry policy, token auth, paginators."""
