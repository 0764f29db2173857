"""Reading the layers below for people: the audit log's pages and API, exports (streamed or as
background jobs), their verification, usage reports and /metrics."""
