-- check: one recommendations row per (user_id, rank).
with counted as (
    select user_id, rank, count(*) as n_rows
    from {{recommendations}}
    group by user_id, rank
)
select * from counted where n_rows > 1
order by user_id, rank
limit 10
