-- check: no user is recommended an item they have already rated.
with rated as (
    select user_id, item_id from {{ratings}}
)
select recs.user_id, recs.rank, recs.item_id
from {{recommendations}} as recs
join rated on rated.user_id = recs.user_id and rated.item_id = recs.item_id
order by recs.user_id, recs.rank
limit 10
