-- recommendations: top-N items per user from the live publication's Parquet; sorted (user_id, rank).
-- A snapshot published before predicted_rating existed reads with that column null (union all by name).
create or replace table {{recommendations}} as
with staged as (
    select * from read_parquet($path)
    union all by name
    select cast(null as float) as predicted_rating where false
)
select user_id, rank, item_id, score, predicted_rating, source, model_name, model_version, publication_id
from staged
order by user_id, rank
