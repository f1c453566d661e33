// integration tests for files
