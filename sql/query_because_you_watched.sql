-- question: "because you watched X" for one user: X is the user's most recent movie rated 4 or more
-- (highest rating, then latest, breaks ties); returns X and its 10 nearest movies the user has not rated.
-- variables: user_id (default 1). DuckDB CLI, on the warehouse file:
--   set variable user_id = 42;
--   .read sql/query_because_you_watched.sql
with liked as (
    select item_id
    from ratings
    where user_id = coalesce(getvariable('user_id'), 1) and rating >= 4
    order by rating desc, rated_at desc, item_id
    limit 1
),
rated as (
    select item_id from ratings where user_id = coalesce(getvariable('user_id'), 1)
),
unseen as (
    select neighbours.*
    from item_neighbors as neighbours
    join liked on liked.item_id = neighbours.item_id
    where neighbours.similar_item_id not in (select item_id from rated)
)
select
    item_id as watched_item_id,
    title as watched_title,
    row_number() over (order by rank) as position,
    similar_item_id,
    similar_title,
    similarity,
    source,
    publication_id
from unseen
order by position
limit 10
