-- is $user_id in the users table? One row: known, n_users, min_user_id, max_user_id.
with ids as (
    select user_id from {{users}}
)
select
    count(*) filter (where user_id = $user_id) > 0 as known,
    count(*) as n_users,
    min(user_id) as min_user_id,
    max(user_id) as max_user_id
from ids
