-- check: no item is listed as similar to itself.
with neighbours as (
    select item_id, rank, similar_item_id from {{similar_items}}
)
select * from neighbours where similar_item_id = item_id
order by item_id, rank
limit 10
