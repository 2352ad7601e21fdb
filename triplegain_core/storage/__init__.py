"""PostgreSQL storage: migrations and the stores that read and write the schema."""
