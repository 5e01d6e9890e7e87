-- question: the 10 movies most similar to one movie ($item_id), with titles.
with neighbours as (
    select rank, similar_item_id, similar_title, similarity, publication_id
    from {{item_neighbors}}
    where item_id = $item_id and rank <= 10
)
select * from neighbours
order by rank
