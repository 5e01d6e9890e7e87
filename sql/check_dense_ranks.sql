-- rule dense_ranks: within each {{group_by}} of {{table}}, ranks are 1..n with no gap or repeat.
with positioned as (
    select {{group_by}}, rank,
        row_number() over (partition by {{group_by}} order by rank) as position
    from {{table}}
)
select * from positioned
where rank <> position
order by {{group_by}}, rank
limit 10
