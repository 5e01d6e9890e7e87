-- check: one users row per user_id, gender is M or F.
with counted as (
    select user_id, count(*) as n_rows, min(gender) as gender, max(gender) as gender_max
    from {{users}}
    group by user_id
)
select * from counted
where n_rows > 1 or user_id is null or gender not in ('M', 'F') or gender_max not in ('M', 'F')
order by user_id
limit 10
