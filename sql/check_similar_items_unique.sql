-- check: one similar_items row per (item_id, rank).
with counted as (
    select item_id, rank, count(*) as n_rows
    from {{similar_items}}
    group by item_id, rank
)
select * from counted where n_rows > 1
order by item_id, rank
limit 10
