// integration tests for sqlite
