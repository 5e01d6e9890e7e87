-- the build record of this warehouse file.
with build as (
    select build_id, built_at, data_hash, sections from {{warehouse_build}}
)
select * from build
