"""What is kept on disk: the Parquet lake, stored splits, publications and their metrics history, the DuckDB
warehouse built from them, and the table checks. Imports core and sources."""
