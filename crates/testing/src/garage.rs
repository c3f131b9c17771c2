//! A real Garage S3 server for tests (filled in by the S3 harness work).
