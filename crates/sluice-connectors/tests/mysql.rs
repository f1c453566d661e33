// integration tests for mysql (against the real server)
