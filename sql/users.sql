-- users: demographics from u.user.
create table {{users}} as
with src as (
    select * from read_parquet($path)
)
select
    cast(user_id as integer)  as user_id,
    cast(age as smallint)     as age,
    gender,
    occupation,
    zip_code
from src
order by user_id
