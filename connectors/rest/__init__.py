"""The REST stream kind: HTTP client with one retry policy, token auth, paginators, and the bulk
path from page bodies to raw Arrow rows. Imports `connectors` (base, errors, spec, records) only;
the pipeline reaches it through `connectors.base.open_stream`."""
