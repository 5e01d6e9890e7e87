-- check: each user's ranks are 1..n with no gap (rank equals the row's position).
with positioned as (
    select user_id, rank, row_number() over (partition by user_id order by rank) as position
    from {{recommendations}}
)
select * from positioned where rank <> position
order by user_id, rank
limit 10
