-- check: both items of every similar_items row are in the catalogue.
with neighbours as (
    select item_id, rank, similar_item_id from {{similar_items}}
)
select neighbours.*
from neighbours
left join {{movies}} as movies on movies.item_id = neighbours.item_id
left join {{movies}} as neighbour_movie on neighbour_movie.item_id = neighbours.similar_item_id
where movies.item_id is null or neighbour_movie.item_id is null
order by neighbours.item_id, neighbours.rank
limit 10
