-- check: each item's neighbour ranks are 1..k with no gap.
with positioned as (
    select item_id, rank, row_number() over (partition by item_id order by rank) as position
    from {{similar_items}}
)
select * from positioned where rank <> position
order by item_id, rank
limit 10
