"""What the tests, benchmarks and evaluations share besides the code under test."""
