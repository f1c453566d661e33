// integration tests for postgres (against the real server)
