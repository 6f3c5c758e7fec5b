//! Two `kiln serve` processes sharing one PostgreSQL database and one bucket.
