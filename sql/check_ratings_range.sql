-- check: every rating is 1..5 and every column is filled.
with bad as (
    select user_id, item_id, rating, rated_at
    from {{ratings}}
    where rating not between 1 and 5
       or user_id is null or item_id is null or rating is null or rated_at is null
)
select * from bad
order by user_id, item_id
limit 10
