// integration tests for transforms
