-- ratings: one row per (user, item) rating, loaded from the live lake snapshot's ratings.parquet.
create table {{ratings}} as
with src as (
    select * from read_parquet($path)
)
select
    cast(user_id as integer)     as user_id,
    cast(item_id as integer)     as item_id,
    cast(rating as tinyint)      as rating,
    cast(rated_at as timestamp)  as rated_at
from src
order by user_id, item_id
