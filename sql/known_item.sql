-- is $item_id in the movies table? One row: known, n_movies, min_item_id, max_item_id.
with ids as (
    select item_id from {{movies}}
)
select
    count(*) filter (where item_id = $item_id) > 0 as known,
    count(*) as n_movies,
    min(item_id) as min_item_id,
    max(item_id) as max_item_id
from ids
