-- check: every recommendation says how it was scored: 'model', 'side_info' or 'popularity'.
with recs as (
    select user_id, rank, source from {{recommendations}}
)
select * from recs
where source is null or source not in ('model', 'side_info', 'popularity')
order by user_id, rank
limit 10
