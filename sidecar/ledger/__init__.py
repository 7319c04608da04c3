"""The cost ledger: SQLAlchemy models, migrations, a batched writer and the report queries."""
