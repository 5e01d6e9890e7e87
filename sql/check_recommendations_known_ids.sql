-- check: every recommended item is in the catalogue and every user is a known user.
with recs as (
    select user_id, rank, item_id from {{recommendations}}
)
select recs.*,
    movies.item_id is null as unknown_item,
    users.user_id is null as unknown_user
from recs
left join {{movies}} as movies on movies.item_id = recs.item_id
left join {{users}} as users on users.user_id = recs.user_id
where movies.item_id is null or users.user_id is null
order by recs.user_id, recs.rank
limit 10
