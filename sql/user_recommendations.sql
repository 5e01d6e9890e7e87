-- user_recommendations: recommendations with the movie's title and genres, sorted (user_id, rank).
-- Materialised as a table, not a view: the warehouse is rebuilt per publish anyway, and a lookup then
-- needs no join (p50 ~1 ms instead of ~8 ms, bench/results/publish.md).
create or replace table {{user_recommendations}} as
with recs as (
    select * from {{recommendations}}
)
select
    recs.user_id,
    recs.rank,
    recs.item_id,
    movies.title,
    movies.genres,
    recs.score,
    recs.predicted_rating,
    recs.source,
    recs.model_name,
    recs.model_version,
    recs.publication_id
from recs
join {{movies}} as movies on movies.item_id = recs.item_id
order by recs.user_id, recs.rank
