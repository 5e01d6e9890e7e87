-- warehouse_build: one row describing this warehouse file (which lake snapshot, when, which sections).
create table {{warehouse_build}} as
with build as (
    select
        cast($build_id as varchar)        as build_id,
        cast($built_at as timestamptz)    as built_at,
        cast($data_hash as varchar)       as data_hash,
        cast($sections as varchar)        as sections
)
select * from build
