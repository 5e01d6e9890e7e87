-- the build record of this warehouse file.
-- no variables. DuckDB CLI, on the warehouse file: .read sql/query_warehouse_build.sql
with build as (
    select build_id, built_at, data_hash, sections from warehouse_build
)
select * from build
