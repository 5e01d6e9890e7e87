-- question: which users have published recommendations (ids, ascending).
with users as (
    select distinct user_id from {{recommendations}}
)
select user_id from users
order by user_id
