-- question: the 10 movies most similar to one movie, with titles.
-- variables: item_id (default 1). DuckDB CLI, on the warehouse file:
--   set variable item_id = 50;
--   .read sql/query_similar_items_for_item.sql
with neighbours as (
    select rank, similar_item_id, similar_title, similarity, source, publication_id
    from item_neighbors
    where item_id = coalesce(getvariable('item_id'), 1) and rank <= 10
)
select * from neighbours
order by rank
