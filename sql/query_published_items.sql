-- question: which items have published similar items (ids, ascending).
-- no variables. DuckDB CLI, on the warehouse file: .read sql/query_published_items.sql
with items as (
    select distinct item_id from similar_items
)
select item_id from items
order by item_id
