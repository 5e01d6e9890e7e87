-- check: similarity never increases with rank within an item, and stays a cosine in [-1, 1].
with stepped as (
    select item_id, rank, similarity,
        lag(similarity) over (partition by item_id order by rank) as previous_similarity
    from {{similar_items}}
)
select * from stepped
where similarity > previous_similarity or similarity is null or isnan(similarity)
    or abs(similarity) > 1.0001
order by item_id, rank
limit 10
