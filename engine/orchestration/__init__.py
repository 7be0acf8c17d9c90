"""The pipeline's steps chained over a project, and the executors that run per-image work."""
