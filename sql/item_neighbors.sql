-- item_neighbors: similar_items with the titles of both movies, sorted (item_id, rank); materialised
-- as a table for lookup latency (see user_recommendations.sql).
create or replace table {{item_neighbors}} as
with neighbours as (
    select * from {{similar_items}}
)
select
    neighbours.item_id,
    movies.title,
    neighbours.rank,
    neighbours.similar_item_id,
    neighbour_movie.title as similar_title,
    neighbours.similarity,
    neighbours.source,
    neighbours.model_name,
    neighbours.model_version,
    neighbours.publication_id
from neighbours
join {{movies}} as movies on movies.item_id = neighbours.item_id
join {{movies}} as neighbour_movie on neighbour_movie.item_id = neighbours.similar_item_id
order by neighbours.item_id, neighbours.rank
