-- genres: the 19 genres of u.genre with the name of their boolean column in movies.
create table {{genres}} as
with src as (
    select * from read_parquet($path)
)
select
    cast(genre_id as smallint)  as genre_id,
    name,
    column_name
from src
order by genre_id
