-- recommendations_drop_rated: the warehouse's recommendations less any item the user has rated since
-- the publication was scored (ratings ingested after the publish); ranks renumbered 1..n in the
-- published order; sorted (user_id, rank). Run after recommendations.sql, in the warehouse only.
create or replace table {{recommendations}} as
with unrated as (
    select recs.*
    from {{recommendations}} as recs
    anti join {{ratings}} as rated on rated.user_id = recs.user_id and rated.item_id = recs.item_id
)
select
    user_id,
    cast(row_number() over (partition by user_id order by rank) as integer) as rank,
    item_id,
    score,
    predicted_rating,
    source,
    model_name,
    model_version,
    publication_id
from unrated
order by user_id, rank
