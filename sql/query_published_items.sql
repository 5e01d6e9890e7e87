-- question: which items have published similar items (ids, ascending).
with items as (
    select distinct item_id from {{similar_items}}
)
select item_id from items
order by item_id
